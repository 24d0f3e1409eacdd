"""HTTPS from the PEM files: a client verifying the server against the test's own
self-signed certificate; and PEM files that cannot be used, named in one line."""

from __future__ import annotations

import ssl

import httpx
import pytest
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


def test_unusable_pem_files_are_named(make_web, tmp_path):
    engine = make_web().engine
    cert, key = self_signed(tmp_path)
    missing = tmp_path / "missing.pem"
    with pytest.raises(
        WebError,
        match=f"ssl_pem_certificate_file_path: cannot read the certificate {missing}: No such file",
    ):
        serve_web(engine, ssl_certificate_path=str(missing), ssl_key_path=str(key))
    with pytest.raises(
        WebError, match=f"ssl_pem_private_key_file_path: cannot read the private key {missing}"
    ):
        serve_web(engine, ssl_certificate_path=str(cert), ssl_key_path=str(missing))
    with pytest.raises(WebError, match=f"{key} is not a PEM certificate"):
        serve_web(engine, ssl_certificate_path=str(key), ssl_key_path=str(key))
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    with pytest.raises(WebError, match=f"{other_key} is not the private key of {cert}"):
        serve_web(engine, ssl_certificate_path=str(cert), ssl_key_path=str(other_key))


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
