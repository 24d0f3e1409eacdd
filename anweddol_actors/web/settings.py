"""What the web front end is asked to do: the ``web_server`` section, resolved once.

The bounds against hostile peers come from the ``server`` section, as for the TCP server:
a body is at most ``server.max_message_size`` bytes, a request (headers and body) must be
complete within ``server.request_deadline`` seconds of the connection (or of the previous
response on a kept-alive one).
"""

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
    # The largest request body read (bytes); past it, 413 and the connection is closed.
    max_message_size: int = 1 << 20
    # Seconds to complete a request (headers and body); a slower peer is cut. None: no
    # bound (then only timeout_keep_alive and limit_concurrency hold a slowloris back).
    request_deadline: float | None = 30.0
    # Seconds an idle kept-alive connection is kept.
    timeout_keep_alive: float = 5.0
    # A backstop: past this many connections (idle ones included) or requests in flight,
    # 503 at once. The engine's own limits (429), per address, come first.
    limit_concurrency: int | None = 1024
    # The largest incomplete HTTP event (request line and headers) held, in bytes.
    max_header_size: int = 16384
    # The longest a request waits for the engine's answer (a CREATE boots a VM); past it,
    # 504, and the answer, if it comes, is not delivered (a CREATE then unwinds).
    answer_timeout: float = 300.0

    @property
    def tls(self) -> bool:
        return self.ssl_key_path is not None and self.ssl_certificate_path is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @classmethod
    def from_config(cls, config: ServerConfig) -> WebSettings:
        web, server = config.web_server, config.server
        bind = web.bind_address if web.bind_address is not None else server.bind_address
        container = config.container
        return cls(
            # "" is every IPv4 interface, as for the TCP server.
            bind_address=bind or "0.0.0.0",
            port=web.port,
            ssl_key_path=web.ssl_pem_private_key_file_path if web.enable_ssl else None,
            ssl_certificate_path=web.ssl_pem_certificate_file_path if web.enable_ssl else None,
            enable_metrics=web.enable_metrics,
            enable_ui=web.enable_ui,
            admin_allowed_ip_list=tuple(web.admin_allowed_ip_list),
            max_message_size=server.max_message_size,
            request_deadline=server.request_deadline,
            limit_concurrency=(
                None if server.max_connections is None else 2 * server.max_connections
            ),
            # A CREATE's own bounds (the guest's boot, then its shell steps), with room.
            answer_timeout=container.ready_timeout + 180.0,
        )
