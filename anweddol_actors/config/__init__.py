"""Server configuration: the original's YAML keys plus ours, validated with Cerberus.

``load_config(path)`` returns a frozen ``ServerConfig``; ``load_config(None)`` is the
embedded default, which ``default.yaml`` (``dump_default()``) spells out with comments.
``read_config(path)`` also keeps which keys the file set and the warnings for those whose
meaning changed from the original's (``compat``).
"""

from anweddol_actors.config.loader import (
    DEFAULT_CONFIG_YAML,
    EMBEDDED_DEFAULT_NAME,
    ConfigError,
    ConfigFile,
    config_from_mapping,
    dump_default,
    load_config,
    parse_config,
    read_config,
)
from anweddol_actors.config.model import (
    AccessTokenConfig,
    ContainerConfig,
    FrontEndConfig,
    IpFilterConfig,
    LogRotationConfig,
    PortForwardingConfig,
    ServerConfig,
    ServerSectionConfig,
    WebServerConfig,
)
from anweddol_actors.config.schema import MAX_CLIENT_PASSWORD_LENGTH

__all__ = [
    "DEFAULT_CONFIG_YAML",
    "EMBEDDED_DEFAULT_NAME",
    "MAX_CLIENT_PASSWORD_LENGTH",
    "AccessTokenConfig",
    "ConfigError",
    "ConfigFile",
    "ContainerConfig",
    "FrontEndConfig",
    "IpFilterConfig",
    "LogRotationConfig",
    "PortForwardingConfig",
    "ServerConfig",
    "ServerSectionConfig",
    "WebServerConfig",
    "config_from_mapping",
    "dump_default",
    "load_config",
    "parse_config",
    "read_config",
]
