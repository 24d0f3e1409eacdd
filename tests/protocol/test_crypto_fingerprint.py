"""The key fingerprint is what openssl and sha256sum give for the public key's DER."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from anweddol_actors.protocol.crypto import fingerprint, generate_private_key, public_pem


def test_fingerprint_matches_openssl_and_sha256sum(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing (scripts/setup installs it)")
    key = generate_private_key(2048)
    pem = tmp_path / "public.pem"
    pem.write_bytes(public_pem(key))
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pem), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    digest = subprocess.run(["sha256sum"], input=der, capture_output=True, check=True).stdout
    assert fingerprint(key) == digest.split()[0].decode()
    assert fingerprint(key.public_key()) == fingerprint(key)
    assert fingerprint(generate_private_key(2048)) != fingerprint(key)
