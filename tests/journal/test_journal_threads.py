"""Several actor threads write one journal at once; nothing is lost or interleaved."""

import threading

import pytest

from anweddol_actors.journal import Journal
from anweddol_actors.lifecycle import Lifecycle, replay

THREADS = 8
ENTITIES_PER_THREAD = 15
WALK = ("start", "stop", "destroy")


@pytest.mark.parametrize("where", ["memory", "file", "postgresql"])
def test_concurrent_lifecycles_and_credentials(request, tmp_path, where):
    # One :memory: journal must be the same database from every thread.
    if where == "postgresql":
        journal = Journal(request.getfixturevalue("pg_url"))
    else:
        journal = Journal(":memory:" if where == "memory" else tmp_path / "j.sqlite3")
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(ENTITIES_PER_THREAD):
                entity_id = f"w{worker}-{n}"
                lifecycle = Lifecycle("forwarder", entity_id, journal, data={"worker": worker})
                journal.store_credentials(entity_id, f"token-{entity_id}")
                for trigger in WALK:
                    lifecycle.fire(trigger, details={"n": n})
                    assert journal.verify_credentials(entity_id, f"token-{entity_id}")
                assert journal.delete_credentials(entity_id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    rows = journal.history()
    assert len(rows) == THREADS * ENTITIES_PER_THREAD * len(WALK)
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
    for worker in range(THREADS):
        for n in range(ENTITIES_PER_THREAD):
            own = journal.history(entity_id=f"w{worker}-{n}")
            assert [row["trigger"] for row in own] == list(WALK)
            assert replay("forwarder", own) == "destroyed"
    assert journal.live_entities() == []
    journal.close()
