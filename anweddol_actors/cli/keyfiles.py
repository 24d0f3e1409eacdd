"""The server's RSA key files: written whole or not at all, read back with their fingerprint.

``serve`` makes the pair on first start and ``regen-rsa`` replaces it; both write through
:func:`write_key_pair`, so a crash or a full disk never leaves a half-written private key
where the server would read it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from anweddol_actors.cli import CliError


def write_key_pair(wrapper, private_path: str | Path, public_path: str | Path, *, replace: bool):
    """Write ``wrapper``'s pair as PEM: the private key 0600, the public key 0644.

    Each file is written to a temporary file in its own folder, synced, then put in place
    by one rename, so a reader sees the old file or the new one, never a part. With
    ``replace=False`` an existing private key is kept (``FileExistsError``): two servers
    starting at once on a fresh host keep the first pair made. The private key is put in
    place first: it is the one the server reads (the public one follows from it).
    """
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.protocol.crypto import private_pem

    private_path, public_path = Path(private_path), Path(public_path)
    private_tmp = _staged(private_path, private_pem(wrapper.private_key), 0o600)
    try:
        public_tmp = _staged(public_path, wrapper.getPublicKey(pem_format=True), 0o644)
    except BaseException:
        private_tmp.unlink(missing_ok=True)
        raise
    try:
        if replace:
            os.replace(private_tmp, private_path)
        else:
            os.link(private_tmp, private_path)  # fails, atomically, when one exists
        os.replace(public_tmp, public_path)
    finally:
        private_tmp.unlink(missing_ok=True)
        public_tmp.unlink(missing_ok=True)


def _staged(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a synced temporary file beside ``path``, with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600 from the start: the private key is never readable by others.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def load_private_key(path: str | Path):
    """The ``RSAWrapper`` of the private key in ``path``; ``CliError`` when it is unusable."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.core.crypto import RSAWrapper

    wrapper = RSAWrapper(generate_key_pair=False)
    try:
        wrapper.setPrivateKey(Path(path).read_bytes(), pem_format=True)
    except Exception as exc:
        raise CliError(f"{path}: not a usable RSA private key ({exc})") from None
    return wrapper
