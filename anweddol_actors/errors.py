"""The one exception base of the package.

Every error the package raises on purpose derives from :class:`AnweddolError`, so a caller
(a user's handler, the CLI, a test) can tell "the server said no" from a bug in one
``except``. Subclasses keep their builtin bases too (``RuntimeError``, ``ValueError``,
``TimeoutError``) where callers written for the original catch those.
"""

from __future__ import annotations

__all__ = ["AnweddolError"]


class AnweddolError(Exception):
    """Base of every exception anweddol_actors defines."""
