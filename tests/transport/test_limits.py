"""ConnectionLimits and RateLimitedLog on their own: the caps, the counts, the release
rule, and a log that a flood cannot multiply."""

import logging
import threading

import pytest

from anweddol_actors.logs.ratelimited import RateLimitedLog
from anweddol_actors.transport import ConnectionLimits


def test_caps_in_all_and_per_address():
    limits = ConnectionLimits(3, 2)
    assert limits.admit("a") and limits.admit("a")
    assert not limits.admit("a")  # per address
    assert limits.admit("b")
    assert not limits.admit("c")  # in all
    assert (limits.open, limits.refused) == (3, 2)
    limits.release("a")
    assert limits.admit("c") and limits.open_from("a") == 1


def test_no_cap_when_none():
    limits = ConnectionLimits(None, None)
    assert all(limits.admit("a") for _ in range(1000))
    assert limits.refused == 0


def test_a_release_without_its_admit_is_refused():
    limits = ConnectionLimits(1, 1)
    with pytest.raises(ValueError, match="never admitted"):
        limits.release("a")
    assert limits.admit("a")
    limits.release("a")
    with pytest.raises(ValueError):
        limits.release("a")
    assert limits.open == 0


def test_concurrent_admits_never_pass_the_cap():
    limits = ConnectionLimits(50, None)
    barrier = threading.Barrier(8)
    admitted = []

    def worker():
        barrier.wait()
        admitted.extend(ok for ok in (limits.admit("a") for _ in range(100)) if ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 50 and limits.open == 50 and limits.refused == 750


def test_the_log_folds_a_flood_into_one_line_per_interval(caplog):
    logger = logging.getLogger("test.ratelog")
    log = RateLimitedLog(logger, interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        written = [log.warning("refused %s; since the last line: %d", "x") for _ in range(500)]
    assert written.count(True) == 1 and log.lines == 1
    assert [r.getMessage() for r in caplog.records] == ["refused x; since the last line: 1"]


def test_the_next_line_carries_the_folded_count(caplog):
    log = RateLimitedLog(logging.getLogger("test.ratelog2"), interval=0)
    with caplog.at_level(logging.WARNING, logger="test.ratelog2"):
        log.warning("n=%d")
        log.warning("n=%d")
    assert [r.getMessage() for r in caplog.records] == ["n=1", "n=1"]
