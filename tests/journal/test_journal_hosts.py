"""The administrator's word on a host (drain / enable), kept in the journal (a SQLite file
or a PostgreSQL database)."""

from anweddol_actors.journal import Journal


def test_a_host_is_enabled_until_drained_and_the_word_survives_reopening(store_url):
    path = store_url
    with Journal(path) as journal:
        assert journal.host_enabled("alpha")
        journal.set_host_enabled("alpha", False)
        assert not journal.host_enabled("alpha")
        assert journal.host_enabled("beta")
    with Journal(path) as journal:
        assert not journal.host_enabled("alpha")
        journal.set_host_enabled("alpha", True)
        assert journal.host_enabled("alpha")
