"""``serve --web`` with TLS files that cannot serve HTTPS: refused before anything starts
(no TCP listener, no journal), with the line ``config check`` prints, exit 2."""

from __future__ import annotations

from pathlib import Path

from commands import run_command
from tls import self_signed


def test_serve_refuses_a_key_that_is_not_the_certificates_before_starting(tmp_path):
    cert, _ = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    config = tmp_path / "config.yaml"
    config.write_text(
        "server:\n"
        f"  database: '{tmp_path}/journal.sqlite3'\n"
        f"  public_rsa_key_file_path: '{tmp_path}/rsa/public.pem'\n"
        f"  private_rsa_key_file_path: '{tmp_path}/rsa/private.pem'\n"
        f"  admin_socket_path: '{tmp_path}/admin.sock'\n"
        "web_server:\n"
        "  enable_ssl: true\n"
        f"  ssl_pem_certificate_file_path: '{cert}'\n"
        f"  ssl_pem_private_key_file_path: '{other_key}'\n"
    )
    line = f"web_server.ssl_pem_private_key_file_path: {other_key}: not the private key of {cert}"
    checked = run_command("config", "check", "-c", str(config))
    assert checked.returncode == 2 and line in checked.stdout + checked.stderr
    served = run_command("serve", "--web", "--port", "0", "-c", str(config), timeout=60)
    assert served.returncode == 2
    [error] = [text for text in served.stderr.splitlines() if text.startswith("error: ")]
    assert line in error
    # Refused before anything started: no journal, no key pair, no admin socket.
    assert not Path(tmp_path / "journal.sqlite3").exists()
    assert not (tmp_path / "rsa").exists() and not (tmp_path / "admin.sock").exists()
