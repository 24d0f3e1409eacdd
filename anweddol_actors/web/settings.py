"""What the web front end is asked to do: the ``web_server`` section, resolved once."""

from __future__ import annotations

from dataclasses import dataclass

from anweddol_actors.config import ServerConfig

__all__ = ["WebSettings"]


@dataclass
class WebSettings:
    bind_address: str = "127.0.0.1"
    port: int = 8080
    # Both PEM paths, or neither (plain HTTP).
    ssl_key_path: str | None = None
    ssl_certificate_path: str | None = None
    enable_metrics: bool = False
    enable_ui: bool = False
    # Who may load /ui/ and its data: addresses or networks, as ip_filter's entries.
    admin_allowed_ip_list: tuple[str, ...] = ("127.0.0.1", "::1")

    @property
    def tls(self) -> bool:
        return self.ssl_key_path is not None and self.ssl_certificate_path is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @classmethod
    def from_config(cls, config: ServerConfig) -> WebSettings:
        web = config.web_server
        bind = web.bind_address if web.bind_address is not None else config.server.bind_address
        return cls(
            # "" is every IPv4 interface, as for the TCP server.
            bind_address=bind or "0.0.0.0",
            port=web.port,
            ssl_key_path=web.ssl_pem_private_key_file_path if web.enable_ssl else None,
            ssl_certificate_path=web.ssl_pem_certificate_file_path if web.enable_ssl else None,
            enable_metrics=web.enable_metrics,
            enable_ui=web.enable_ui,
            admin_allowed_ip_list=tuple(web.admin_allowed_ip_list),
        )
