"""The hypervisor layer: libvirt domains for containers. The only package importing libvirt.

from anweddol_actors.hypervisor import Hypervisor, DomainSpec, wait_for_ssh_banner
"""

from anweddol_actors.hypervisor.connection import (
    DEFAULT_URI,
    DomainHandle,
    DomainInfo,
    Hypervisor,
)
from anweddol_actors.hypervisor.daemons import ensure_daemons
from anweddol_actors.hypervisor.domain_xml import (
    DEFAULT_NAT_INTERFACE_NAME,
    DOMAIN_NAME_PREFIX,
    MARKER_NAMESPACE,
    DomainSpec,
    domain_name,
    render_domain_xml,
)
from anweddol_actors.hypervisor.errors import (
    DomainCreateError,
    DomainNotFound,
    ForwardPortInUse,
    GuestTimeout,
    HypervisorError,
    HypervisorUnavailable,
)
from anweddol_actors.hypervisor.readiness import probe_ssh_banner, wait_for_ssh_banner

__all__ = [
    "DEFAULT_NAT_INTERFACE_NAME",
    "DEFAULT_URI",
    "DOMAIN_NAME_PREFIX",
    "MARKER_NAMESPACE",
    "DomainCreateError",
    "DomainHandle",
    "DomainInfo",
    "DomainNotFound",
    "DomainSpec",
    "ForwardPortInUse",
    "GuestTimeout",
    "Hypervisor",
    "HypervisorError",
    "HypervisorUnavailable",
    "domain_name",
    "ensure_daemons",
    "probe_ssh_banner",
    "render_domain_xml",
    "wait_for_ssh_banner",
]
