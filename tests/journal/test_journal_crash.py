"""A process killed in the middle of a journal transaction leaves no trace of it."""

import signal
import textwrap

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle, replay
from tests.commands import kill_at_marker

# The child fires "start", then "stop" with a stall planted between the entity-row write
# and the commit; the parent kills it there with SIGKILL. The stall is a TEMP trigger on
# the child's own connection (reached through a private attribute: a fault-injection hook,
# not an API), so the database file's schema is the production one. The entity row of
# "stop" is an UPDATE: the upsert of the row "start" inserted.
CHILD = textwrap.dedent(
    """
    import pathlib, sys, time
    from anweddol_actors.journal import Journal
    from anweddol_actors.lifecycle import Lifecycle

    db, marker = sys.argv[1:]
    journal = Journal(db)
    lifecycle = Lifecycle("forwarder", "f1", journal, data={"port": 6150})
    lifecycle.fire("start")

    def stall():
        pathlib.Path(marker).write_text("in the transaction")
        time.sleep(120)
        return 0

    connection = journal._db.connection()
    connection.create_function("stall", 0, stall)
    connection.execute(
        "CREATE TEMP TRIGGER stall_stop AFTER UPDATE ON main.entities"
        " WHEN NEW.state = 'stopped' BEGIN SELECT stall(); END"
    )
    lifecycle.fire("stop", data={"port": None})
    print("the stop committed: the test did not kill in time", file=sys.stderr)
    """
)


def test_sigkill_mid_transaction_loses_the_whole_transition(tmp_path):
    db = tmp_path / "journal.sqlite3"
    marker = tmp_path / "stalled"
    # Killed once both rows of "stop" are written, uncommitted: the worst moment to die.
    status = kill_at_marker(CHILD, str(db), str(marker), marker=marker, what="the stall")
    assert status == -signal.SIGKILL

    with Journal(db, create=False) as journal:
        rows = journal.history()
        assert [(row["trigger"], row["dest"]) for row in rows] == [("start", "started")]
        assert journal.entity("f1")["state"] == "started"
        assert journal.entity("f1")["data"] == {"port": 6150}
        assert replay("forwarder", rows) == "started"
        # The survivor picks up where the journal says, and can finish the job.
        resumed = Lifecycle.resume(journal, "f1")
        assert resumed.fire("stop").dest == "stopped"
        assert [row["id"] for row in journal.history()] == [1, 2]
