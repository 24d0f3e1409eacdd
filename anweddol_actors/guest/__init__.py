"""Inside the container: the endpoint shell that administers a freshly booted guest."""

from anweddol_actors.guest.shell import (
    ENDPOINT_LISTEN_PORT,
    ENDPOINT_PASSWORD,
    ENDPOINT_USERNAME,
    MAX_PASSWORD_LENGTH,
    AdministrationError,
    EndpointAuthError,
    EndpointConnectError,
    EndpointShell,
    EndpointShellError,
    HostKeyMismatch,
    generate_credentials,
    validate_account,
)

__all__ = [
    "ENDPOINT_LISTEN_PORT",
    "ENDPOINT_PASSWORD",
    "ENDPOINT_USERNAME",
    "MAX_PASSWORD_LENGTH",
    "AdministrationError",
    "EndpointAuthError",
    "EndpointConnectError",
    "EndpointShell",
    "EndpointShellError",
    "HostKeyMismatch",
    "generate_credentials",
    "validate_account",
]
