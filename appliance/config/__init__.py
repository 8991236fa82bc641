"""The configuration tree (config.yaml), read into pydantic models.

Every field has a description; unknown keys are errors; every error names the key path,
the bad value and what was expected. Environment variables override any key:
``APPLIANCE__<SECTION>__<KEY>=value`` (double underscores separate the path, case-insensitive,
values parsed as YAML scalars), e.g. ``APPLIANCE__MQTT__PORT=1884``. The MQTT password never
lives in the YAML: it comes from ``$APPLIANCE_MQTT_PASSWORD`` or from the file ``mqtt-password``
in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).

One module per area holds its sections (``edge``, ``mqtt``, ``skin``, ``backoffice``,
``console``, ``pathology``, ``updates``), ``tree`` joins them into :class:`Config` and
``loader`` reads a file and the environment into it; the names are all importable from here.
"""

from appliance.config.backoffice import BackofficeConfig, StoreConfig
from appliance.config.console import ConsoleConfig
from appliance.config.edge import (
    CameraConfig,
    DeviceConfig,
    EdgeConfig,
    ModelConfig,
    ScreenConfig,
)
from appliance.config.loader import (
    MAX_CONFIG_BYTES,
    ConfigError,
    config_from_mapping,
    load_config,
    load_config_or_defaults,
    missing_files,
    read_yaml,
    resolve_paths,
    value_origin,
)
from appliance.config.mqtt import PASSWORD_CREDENTIAL, PASSWORD_ENV, MqttConfig, TlsConfig
from appliance.config.pathology import PathologyConfig
from appliance.config.skin import SkinConfig
from appliance.config.tree import Config
from appliance.config.updates import UpdatesConfig
from appliance.configname import DEFAULT_CONFIG_FILE, ENV_PREFIX

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "MAX_CONFIG_BYTES",
    "PASSWORD_CREDENTIAL",
    "PASSWORD_ENV",
    "BackofficeConfig",
    "CameraConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "DeviceConfig",
    "EdgeConfig",
    "ModelConfig",
    "MqttConfig",
    "PathologyConfig",
    "ScreenConfig",
    "SkinConfig",
    "StoreConfig",
    "TlsConfig",
    "UpdatesConfig",
    "config_from_mapping",
    "load_config",
    "load_config_or_defaults",
    "missing_files",
    "read_yaml",
    "resolve_paths",
    "value_origin",
]
