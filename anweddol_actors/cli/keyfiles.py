"""The server's RSA key files: written whole or not at all, read back with their fingerprint.

``serve`` makes the pair on first start and ``regen-rsa`` replaces it; both write through
:func:`write_key_pair`, so a crash or a full disk never leaves a half-written private key
where the server would read it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from anweddol_actors.cli import CliError

log = logging.getLogger("anweddol_actors.serve")


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


def load_or_create_keys(config):
    """The server's RSA key pair: loaded from its file, or made once and kept (0600)."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.core.crypto import RSAWrapper

    server = config.server
    if server.enable_onetime_rsa_keys:
        return RSAWrapper()
    private_path = Path(server.private_rsa_key_file_path)
    if private_path.exists():
        return load_private_key(private_path)
    log.info("generating the server's RSA-4096 key pair in %s", private_path.parent)
    wrapper = RSAWrapper()
    try:
        write_key_pair(wrapper, private_path, server.public_rsa_key_file_path, replace=False)
    except FileExistsError:
        return load_private_key(private_path)  # another start made it meanwhile: use it
    except OSError as exc:
        raise CliError(f"cannot store the RSA keys in {private_path.parent}: {exc}") from None
    return wrapper


def key_fingerprint(rsa_wrapper) -> str:
    """The fingerprint clients check the server's key against (``protocol.crypto``)."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.protocol.crypto import fingerprint

    return fingerprint(rsa_wrapper.private_key)


def file_fingerprint(config) -> str | None:
    """The fingerprint of the configured public key file (None when it cannot be read)."""
    if config.server.enable_onetime_rsa_keys:
        return None  # a one-time key lives only in the server
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.protocol.crypto import fingerprint, load_public_key

    try:
        key = load_public_key(Path(config.server.public_rsa_key_file_path).read_bytes())
        return fingerprint(key)
    except (OSError, ValueError, TypeError):
        return None
