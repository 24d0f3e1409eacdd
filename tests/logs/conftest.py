"""Fixtures of the log tests: a clean root logger around each test that configures it."""

from __future__ import annotations

import logging

import pytest

from anweddol_actors.logs import setup, trouble


@pytest.fixture
def clean_logging():
    """Undo :func:`anweddol_actors.logs.configure` after the test: its handlers are
    removed and closed, the root and ``transitions`` levels restored, the report limiter
    forgotten."""
    root = logging.getLogger()
    level = root.level
    transitions_level = logging.getLogger("transitions").level
    trouble._reset()
    yield
    with setup._lock:
        installed = list(setup._installed)
        setup._installed.clear()
    for handler in installed:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    logging.getLogger("transitions").setLevel(transitions_level)
    trouble._reset()
