"""SHA-256 of container ISOs, streamed and cached (the CREATE response carries it)."""

from __future__ import annotations

import hashlib
import os
import threading

__all__ = ["iso_sha256"]

_checksums: dict[tuple[str, int, int], str] = {}
_checksums_lock = threading.Lock()


def iso_sha256(path: str) -> str:
    """SHA-256 of an ISO, streamed, and cached per (path, size, mtime).

    The seed read the whole ISO into memory on every CREATE (PROTOCOL.md §4).
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _checksums_lock:
        if key in _checksums:
            return _checksums[key]
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _checksums_lock:
        _checksums[key] = value
    return value
