"""Rotation of the log file, as the original's ``log_rotation`` section describes it.

Once the file holds ``max_lines`` lines, its content is either zipped into the archive
folder (``archive``: ``archived_<UTC time>.zip``) or dropped (``delete``), and the file
starts empty. The original polled the file from a thread; here the handler counts the
lines it writes (and those the file held when it was opened) and rotates before the
record that would exceed the count.
"""

from __future__ import annotations

import errno
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ACTIONS", "Rotation", "archive", "count_lines", "make_folder"]

ACTIONS = ("archive", "delete")

# Log files hold addresses and container ids: not for every local user.
FILE_MODE = 0o640
FOLDER_MODE = 0o750


@dataclass(frozen=True)
class Rotation:
    """``max_lines``: lines the file may hold; ``action``: ``archive`` or ``delete``;
    ``archive_folder``: where the zips go (None: beside the log file)."""

    max_lines: int
    action: str = "archive"
    archive_folder: str | None = None

    def __post_init__(self) -> None:
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, not {self.max_lines}")
        if self.action not in ACTIONS:
            raise ValueError(f"rotation action {self.action!r} is not archive or delete")


def make_folder(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` and its parents (0750) unless it exists; a path in the way that is
    not a folder is named as such (``os.makedirs`` would say "File exists")."""
    try:
        os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder") from None


def count_lines(path: str | os.PathLike[str]) -> int:
    """Lines in the file at ``path`` (a last line without newline counts); 0 if missing."""
    count = 0
    last = b"\n"
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
    except FileNotFoundError:
        return 0
    return count + (last != b"\n")


def archive(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None) -> Path:
    """Zip the file at ``path`` into ``folder`` (created; None: the file's own folder)
    as ``archived_<UTC time>.zip``; returns the zip's path. Written under a temporary
    name first, so a failure leaves no half-written archive."""
    source = Path(path)
    target_folder = Path(folder) if folder else source.parent
    make_folder(target_folder)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(now))
    base = f"archived_{stamp}.{int(now % 1 * 1_000_000):06d}Z"
    target = target_folder / f"{base}.zip"
    suffix = 1
    while target.exists():  # two rotations in the same microsecond: keep both
        target = target_folder / f"{base}-{suffix}.zip"
        suffix += 1
    partial = target.with_name(f".{target.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as stream:
            with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
                bundle.write(source, arcname=source.name)
        os.replace(partial, target)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise
    return target
