"""Errors of the hypervisor layer: one base class, a few the callers act upon."""

from __future__ import annotations

from anweddol_actors.errors import AnweddolError


class HypervisorError(AnweddolError, RuntimeError):
    """Something libvirt refused or could not do."""


class HypervisorUnavailable(HypervisorError):
    """The libvirt URI does not answer (daemon down, wrong URI, no permission)."""


class DomainNotFound(HypervisorError):
    """No domain with that UUID (never existed, or already gone)."""


class DomainCreateError(HypervisorError):
    """``create_domain`` failed; ``reason`` says why in a way callers can branch on.

    reason: "port_in_use" (QEMU could not bind the user-mode forward port: pick another and
    retry), "iso_unreadable" (the ISO is missing or QEMU may not read it), or "other".
    """

    def __init__(self, message: str, *, reason: str = "other", uuid: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.uuid = uuid


class ForwardPortInUse(DomainCreateError):
    """The forward port of a ``user`` network domain is taken: retry with another port."""

    def __init__(self, message: str, *, port: int | None, uuid: str | None = None):
        super().__init__(message, reason="port_in_use", uuid=uuid)
        self.port = port


class GuestTimeout(HypervisorError, TimeoutError):
    """The guest did not become reachable (address, SSH banner) before the deadline."""
