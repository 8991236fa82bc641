"""The config file's name and the environment's override prefix: plain values that the command
line's help and its checks name without loading the config models (pydantic, appliance/config)."""

from __future__ import annotations

DEFAULT_CONFIG_FILE = "config.yaml"  # looked for in the working folder when no --config is given
ENV_PREFIX = "APPLIANCE__"
