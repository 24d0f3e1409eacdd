"""The one line a bad configuration gets, for the configuration tests."""

from __future__ import annotations

import pytest

from anweddol_actors.config import ConfigError, parse_config


def error_of(text: str) -> str:
    """The error ``text`` (a configuration file's YAML) is refused with: one line."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message
