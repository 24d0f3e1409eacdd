"""HTTPS from the PEM files: a client verifying the server against the test's own
self-signed certificate; and PEM files that cannot be used, named in one line."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from serverharness import serve_web
from tls import self_signed

from anweddol_actors.config import config_from_mapping
from anweddol_actors.config.host import file_problems
from anweddol_actors.web.server import WebError


def test_stat_over_https_verified_against_the_certificate(make_web, tmp_path):
    cert, key = self_signed(tmp_path)
    web = make_web(web={"ssl_certificate_path": str(cert), "ssl_key_path": str(key)})
    assert web.url.startswith("https://127.0.0.1:")
    verified = ssl.create_default_context(cafile=str(cert))
    response = httpx.post(web.url + "/stat", verify=verified, timeout=10)
    assert response.status_code == 200 and response.json()["message"] == "OK"
    # A client that does not know the certificate refuses it (it is self-signed).
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.post(web.url + "/stat", timeout=10)
    # Plain HTTP on the HTTPS port is not served.
    with pytest.raises(httpx.HTTPError):
        httpx.post(web.url.replace("https://", "http://") + "/stat", timeout=10)


def encrypted_copy(key: Path, folder: Path) -> Path:
    """``key`` written again, encrypted with a password."""
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    path = folder / "encrypted.pem"
    path.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


def unusable_pairs(tmp_path: Path) -> list[tuple[Path, Path, str]]:
    """``(certificate, key, the one line that names what is wrong)`` for each bad pair."""
    cert, key = self_signed(tmp_path)
    missing = tmp_path / "missing.pem"
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    return [
        (missing, key, f"ssl_pem_certificate_file_path: {missing}: no such file"),
        (cert, missing, f"ssl_pem_private_key_file_path: {missing}: no such file"),
        (key, key, f"ssl_pem_certificate_file_path: {key}: not a PEM certificate"),
        (cert, cert, f"ssl_pem_private_key_file_path: {cert}: not a PEM private key"),
        (
            cert,
            encrypted_copy(key, tmp_path),
            "the key is encrypted (a service cannot type its password)",
        ),
        (cert, other_key, f"ssl_pem_private_key_file_path: {other_key}: not the private key of"),
    ]


def test_unusable_pem_files_are_named(make_web, tmp_path):
    engine = make_web().engine
    for cert, key, line in unusable_pairs(tmp_path):
        with pytest.raises(WebError, match=re.escape(line)):
            serve_web(engine, ssl_certificate_path=str(cert), ssl_key_path=str(key))


def test_config_check_names_unusable_pem_files(tmp_path):
    # config check asks the question serve asks, before anything starts.
    for cert, key, line in unusable_pairs(tmp_path):
        config = config_from_mapping(
            {
                "web_server": {
                    "enable_ssl": True,
                    "ssl_pem_certificate_file_path": str(cert),
                    "ssl_pem_private_key_file_path": str(key),
                }
            }
        )
        [problem] = [p for p in file_problems(config) if p.startswith("web_server.")]
        assert line in problem


def test_config_check_names_missing_pem_files(tmp_path):
    cert, _ = self_signed(tmp_path)
    config = config_from_mapping(
        {
            "web_server": {
                "enabled": True,
                "enable_ssl": True,
                "ssl_pem_certificate_file_path": str(cert),
                "ssl_pem_private_key_file_path": str(tmp_path / "nope.pem"),
            }
        }
    )
    problems = [p for p in file_problems(config) if p.startswith("web_server.")]
    assert problems == [
        f"web_server.ssl_pem_private_key_file_path: {tmp_path}/nope.pem: no such file"
    ]
