"""Dropping root for ``server.user``: who that user is, what it must own, and the drop.

The server opens as root what needs root (the listening socket, the journal, the keys, the
token database, the log file, the admin socket, libvirt's connection), hands the user the
files it writes later, then becomes that user for good: ``initgroups`` (its primary and
supplementary groups), ``setgid``, ``setuid``. glibc applies each of these to every
thread of the process, so no thread keeps root.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from anweddol_actors.errors import AnweddolError

# Folders shared with the rest of the system: never handed to the server's user, even
# when a configured file sits directly in one of them (the user could then replace any
# file there).
SHARED_FOLDERS = frozenset(
    {
        "/",
        "/etc",
        "/home",
        "/opt",
        "/root",
        "/run",
        "/srv",
        "/tmp",
        "/usr",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/run",
        "/var/tmp",
        "/dev/shm",
    }
)


class PrivilegeError(AnweddolError):
    """``server.user`` cannot be used or the drop failed; one line."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def groups(self) -> list[int]:
        """Its primary and supplementary groups, as ``initgroups`` gives them."""
        return os.getgrouplist(self.name, self.gid)

    def describe(self) -> str:
        names = []
        for gid in self.groups:
            try:
                names.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                names.append(str(gid))
        return f"{self.name} (uid {self.uid}, groups {','.join(names)})"


def lookup(name: str) -> Account:
    """The account named ``name``; ``PrivilegeError`` when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"server.user: no such user {name!r}") from None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def unprivileged_port_start() -> int:
    """The lowest port a non-root process may bind (Linux sysctl; 1024 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def shareable(folder: Path) -> bool:
    """Whether ``folder`` may be handed to the server's user: not a system-wide folder,
    not a sticky one (``/tmp``-like: shared by every user)."""
    try:
        resolved = folder.resolve()
        mode = resolved.stat().st_mode
    except OSError:
        return False
    return str(resolved) not in SHARED_FOLDERS and not mode & stat.S_ISVTX


def hand_over(account: Account, files: list[Path], folders: list[Path]) -> list[str]:
    """Give ``account`` the files and folders it writes after the drop (those that exist);
    returns one line per folder left as it is (shared with the system)."""
    kept = []
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            continue
        if not shareable(folder):
            kept.append(f"{folder} is shared with the system: left to its owner")
            continue
        _chown(folder, account)
    for path in dict.fromkeys(files):
        if path.exists():
            _chown(path, account)
    return kept


def _chown(path: Path, account: Account) -> None:
    try:
        # lchown: a symlink planted in a handed-over folder must not redirect root's chown.
        os.lchown(path, account.uid, account.gid)
    except OSError as exc:
        raise PrivilegeError(f"cannot give {path} to {account.name}: {exc.strerror}") from None


def drop(account: Account) -> None:
    """Become ``account`` for good (groups first: they need root)."""
    try:
        os.initgroups(account.name, account.gid)
        os.setgid(account.gid)
        os.setuid(account.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot become {account.name}: {exc.strerror}") from None
    if os.getuid() != account.uid or os.geteuid() != account.uid or os.getegid() != account.gid:
        raise PrivilegeError(f"still not {account.name} after the drop")
