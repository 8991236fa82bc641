"""The configuration tree (config.yaml), read into pydantic models.

Every field has a description; unknown keys are errors; every error names the key path,
the bad value and what was expected. Environment variables override any key:
``APPLIANCE__<SECTION>__<KEY>=value`` (double underscores separate the path, case-insensitive,
values parsed as YAML scalars), e.g. ``APPLIANCE__MQTT__PORT=1884``. The MQTT password never
lives in the YAML: it comes from ``$APPLIANCE_MQTT_PASSWORD`` or from the file ``mqtt-password``
in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from appliance.pathology.server_config import PathologyConfig
from appliance.safeyaml import YamlLimitError, safe_load_limited

ENV_PREFIX = "APPLIANCE__"
PASSWORD_ENV = "APPLIANCE_MQTT_PASSWORD"
PASSWORD_CREDENTIAL = "mqtt-password"
MAX_CONFIG_BYTES = 1_000_000
DEFAULT_CONFIG_FILE = "config.yaml"  # looked for in the working folder when no --config is given


class ConfigError(Exception):
    """A configuration problem, with the file and every bad key path in its message."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(_Section):
    id: str = Field(
        "kiosk-dev-1",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Unique device id; part of every MQTT topic (letters, digits, _ . -).",
    )
    site: str = Field(
        "lab",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Site (shop, clinic) the kiosk stands in; part of every MQTT topic.",
    )


class CameraConfig(_Section):
    source: Literal["uvc", "directory", "synthetic"] = Field(
        "synthetic",
        description="Frame source: the UVC microscope, a folder of saved JPEGs, or synthetic skin.",
    )
    path: str | None = Field(
        None,
        description="Device node for uvc (e.g. /dev/scalar-microscope) or folder for directory.",
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Stop after this many measurements and exit 0 (unset: run forever).",
    )
    seed: int = Field(0, ge=0, description="Random seed of the synthetic source.")

    @model_validator(mode="after")
    def _path_needed(self) -> CameraConfig:
        if self.source in ("uvc", "directory") and not self.path:
            raise ValueError(f"camera.path is required when camera.source is {self.source!r}")
        return self


class TlsConfig(_Section):
    enabled: bool = Field(False, description="Connect to the broker over TLS.")
    ca_file: str | None = Field(None, description="CA bundle that verifies the broker.")
    cert_file: str | None = Field(None, description="Client certificate (PEM), optional.")
    key_file: str | None = Field(None, description="Client private key (PEM), with cert_file.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("mqtt.tls.cert_file and mqtt.tls.key_file go together")
        return self


class MqttConfig(_Section):
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    topic_prefix: str = Field(
        "appliance",
        min_length=1,
        pattern=r"^[^#+/\s][^#+\s]*$",
        description="First topic level(s) of every topic; no wildcards.",
    )
    username: str | None = Field(None, description="Broker user name (password from env).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_yaml(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "password" in data:
            raise ValueError(
                f"the MQTT password never goes in the YAML: set ${PASSWORD_ENV} or the "
                f"credential file {PASSWORD_CREDENTIAL!r} in $CREDENTIALS_DIRECTORY"
            )
        return data

    def password(self) -> str | None:
        """The broker password from the environment or systemd credentials, if any."""
        if PASSWORD_ENV in os.environ:
            return os.environ[PASSWORD_ENV]
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir and (Path(cred_dir) / PASSWORD_CREDENTIAL).is_file():
            return (Path(cred_dir) / PASSWORD_CREDENTIAL).read_text().strip()
        return None


class ModelConfig(_Section):
    path: str | None = Field(
        None, description="ONNX classifier of skin features (unset: no classification)."
    )


class UpdatesConfig(_Section):
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Base URL of the TUF model repository (metadata/ and targets/ under it); "
        "unset: no remote model updates.",
    )
    trusted_root: str | None = Field(
        None, description="The repository's root metadata file this kiosk starts trusting from."
    )
    check_interval_s: float = Field(
        3600.0, ge=1.0, description="Seconds between refreshes when no notice arrives."
    )
    device_type: str = Field(
        "skin-kiosk", min_length=1, max_length=64, description="Matched against a release's "
        "compatible device types."
    )
    download_tries: int = Field(3, ge=1, le=10, description="Tries per download (cut transfers).")
    download_timeout_s: int = Field(30, ge=1, description="Socket timeout of one download.")
    health_measurements: int = Field(
        20, ge=1, description="Measurements after a swap that the health check watches."
    )
    health_window_s: float = Field(
        240.0, gt=0.0, description="The health check passes after this long without errors "
        "even when fewer measurements came (keep it under the rollout's --timeout-s)."
    )
    health_max_label_distance: float = Field(
        0.9, gt=0.0, le=1.0, description="Largest total-variation distance between the label "
        "shares of the watched measurements and of the self-test before rolling back.",
    )

    @model_validator(mode="after")
    def _root_with_url(self) -> UpdatesConfig:
        if self.url is not None and self.trusted_root is None:
            raise ValueError("updates.url is set but updates.trusted_root is not; give the "
                             "repository's root.json the kiosk starts trusting from")
        return self


class SkinConfig(_Section):
    um_per_px: float = Field(
        10.0,
        gt=0.5,
        le=100.0,
        description="Micrometres per pixel of the microscope (measure with `appliance calibrate`).",
    )


class StoreConfig(_Section):
    url: str | None = Field(
        None,
        pattern=r"^(sqlite:///.+|postgresql://.*)$",
        description="Back-office store: sqlite:///PATH or postgresql://user@host:port/db "
        "(unset: SQLite file backoffice.sqlite3 in state_dir).",
    )


class BackofficeConfig(_Section):
    share_group: str = Field(
        "backoffice",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="MQTT v5 shared-subscription group; workers in one group split the results.",
    )
    client_id: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="MQTT client id of this worker, stable across restarts so its session "
        "survives (unset: backoffice-HOSTNAME); unique per worker.",
    )
    session_expiry_s: int = Field(
        86400, ge=60, description="How long the broker keeps a stopped worker's session (s)."
    )
    receive_maximum: int = Field(
        2000, ge=10, le=65535, description="Unacknowledged messages the broker may send at once."
    )
    batch_max_rows: int = Field(
        500, ge=1, le=100_000, description="Most messages committed in one store transaction."
    )
    batch_interval_ms: int = Field(
        20, ge=1, le=10_000, description="Longest wait to fill a batch before committing (ms)."
    )
    dead_letter_max_bytes: int = Field(
        65536, ge=0, description="Bytes of a rejected payload kept in the dead-letter table."
    )
    dead_letter_max_rows: int = Field(
        100_000, ge=1, description="Dead-letter rows kept; the oldest are pruned beyond this."
    )
    dead_letter_max_total_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Bytes all kept dead letters may hold together; "
        "the oldest are pruned beyond this."
    )


class EdgeConfig(_Section):
    frame_queue_size: int = Field(
        4, ge=1, le=64, description="Frames waiting for the quality gate; the oldest is dropped."
    )
    burst_frames: int = Field(
        5, ge=1, le=60, description="Steady on-skin frames gathered; the best one is measured."
    )
    rearm_frames: int = Field(
        3, ge=1, le=600, description="Consecutive not-ok frames that end a contact (scope lifted)."
    )
    result_queue_size: int = Field(
        1000, ge=1, le=100_000, description="Results waiting for the outbox commit."
    )
    group_commit_max: int = Field(
        256, ge=1, le=10_000, description="Most results committed in one fsync'd transaction."
    )
    outbox_max_rows: int = Field(
        100_000, ge=10, description="Most results the outbox holds while the broker is away."
    )
    outbox_max_age_h: float = Field(
        720.0, gt=0, description="Results older than this are dropped (and counted) (hours)."
    )
    outbox_policy: Literal["drop_oldest", "refuse_new"] = Field(
        "drop_oldest", description="What a full outbox does: drop its oldest or refuse new ones."
    )
    max_inflight: int = Field(
        1000, ge=1, le=65535, description="QoS 1 results published and not yet acknowledged."
    )
    message_expiry_s: int = Field(
        604_800, ge=60, description="MQTT message expiry of a result (s)."
    )
    session_expiry_s: int = Field(
        86_400, ge=60, description="How long the broker keeps this device's session (s)."
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, le=60, description="First broker reconnect delay (s); doubles per failure."
    )
    reconnect_cap_s: float = Field(
        5.0, gt=0, le=300, description="Longest broker reconnect delay (s)."
    )
    ack_resend_initial_s: float = Field(
        10.0, gt=0, le=3600, description="Send a result again when the back office has not "
        "confirmed it this long after the broker took it (s); doubles while none arrive."
    )
    ack_resend_cap_s: float = Field(
        300.0, gt=0, le=86_400, description="Longest wait before unconfirmed results go again (s)."
    )
    camera_stall_s: float = Field(
        5.0, gt=0, le=600, description="No frame for this long means the camera failed (s)."
    )
    camera_reopen_cap_s: float = Field(
        30.0, gt=0, le=600, description="Longest delay between camera reopen attempts (s)."
    )
    synthetic_fps: float = Field(
        15.0, ge=0, le=1000, description="Frame rate of the synthetic camera (0: unpaced)."
    )
    watchdog_stall_s: float = Field(
        30.0, gt=0, le=3600, description="A thread stuck this long stops the watchdog pings (s)."
    )
    status_interval_s: float = Field(
        60.0, ge=1, description="How often the retained status is refreshed (s)."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus metrics on 127.0.0.1:PORT (unset: off)."
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> EdgeConfig:
        if self.reconnect_initial_s > self.reconnect_cap_s:
            raise ValueError("edge.reconnect_initial_s must not exceed edge.reconnect_cap_s")
        return self


class ScreenConfig(_Section):
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Kiosk screen on http://127.0.0.1:PORT/ for Chromium in kiosk mode "
        "(unset: no screen server; the last result is still written to state_dir/screen).",
    )
    language: Literal["ja", "en"] = Field(
        "ja", description="Language the screen starts in (customers can switch on screen)."
    )
    idle_s: float = Field(
        60.0, ge=5, le=3600, description="The screen clears itself after this long idle (s)."
    )
    preview_fps: float = Field(
        15.0, ge=1, le=30, description="Most frames per second of the live preview."
    )
    preview_width_px: int = Field(
        640, ge=160, le=1920, description="Width of the live preview picture (px)."
    )
    reference_file: str | None = Field(
        None,
        description="Age-band reference ranges from the cohort (`appliance console reference "
        "--out FILE`); unset: the result is shown without them.",
    )


class ConsoleConfig(_Section):
    bind: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the back-office console listens on (loopback by default; put a "
        "TLS reverse proxy in front to serve others, see README).",
    )
    port: int = Field(8080, ge=1, le=65535, description="Console TCP port.")
    session_hours: float = Field(
        8.0, gt=0, le=168, description="How long a console login lasts (hours)."
    )
    cohort_cache_s: float = Field(
        60.0, ge=0, le=3600, description="How long the cohort figures are reused (s)."
    )


class Config(_Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig, description="Who this kiosk is.")
    camera: CameraConfig = Field(
        default_factory=CameraConfig, description="Where frames come from."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="The broker connection.")
    state_dir: str = Field(
        "./state",
        min_length=1,
        description="Folder for the outbox, installed models and the last result "
        "(relative paths are relative to the config file).",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The on-device model.")
    skin: SkinConfig = Field(default_factory=SkinConfig, description="Skin measurement settings.")
    store: StoreConfig = Field(
        default_factory=StoreConfig, description="Where the back office keeps results."
    )
    backoffice: BackofficeConfig = Field(
        default_factory=BackofficeConfig, description="Back-office ingest worker settings."
    )
    edge: EdgeConfig = Field(
        default_factory=EdgeConfig, description="Edge daemon queues, outbox and supervision."
    )
    pathology: PathologyConfig = Field(
        default_factory=PathologyConfig, description="The pathology server (issue 14)."
    )
    screen: ScreenConfig = Field(
        default_factory=ScreenConfig, description="The kiosk's customer screen."
    )
    console: ConsoleConfig = Field(
        default_factory=ConsoleConfig, description="The back-office web console and HTTP API."
    )
    updates: UpdatesConfig = Field(
        default_factory=UpdatesConfig, description="Verified remote model updates (TUF)."
    )

    def summary(self) -> str:
        """One line naming the device, camera, broker and state folder."""
        limit = "forever" if self.camera.limit is None else f"limit {self.camera.limit}"
        tls = "tls" if self.mqtt.tls.enabled else "plain"
        return (
            f"device {self.device.site}/{self.device.id}, camera {self.camera.source} ({limit}), "
            f"broker {self.mqtt.host}:{self.mqtt.port} ({tls}), prefix {self.mqtt.topic_prefix}, "
            f"state {self.state_dir}, model {self.model.path or 'none'}, "
            f"{self.skin.um_per_px} um/px"
        )


def _shown(value: Any, limit: int = 80) -> str:
    """repr of a bad value, cut so a hostile one cannot flood the error."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _format_errors(exc: ValidationError, env_names: Mapping[str, str] | None = None) -> list[str]:
    problems = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if names := _env_names_under(path, err["type"], env_names or {}):
            path = f"{path} (from environment variable {names})"
        if err["type"] == "extra_forbidden":
            value = _shown(err["input"])
            problems.append(f"{path}: unknown key (value {value}); check the spelling")
        elif err["type"] == "value_error":
            problems.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
        else:
            expected = err["msg"].removeprefix("Input should be ")
            problems.append(f"{path}: got {_shown(err['input'])}; expected {expected}")
    return problems


def _env_names_under(path: str, kind: str, env_names: Mapping[str, str]) -> str:
    """The APPLIANCE__ variable(s) behind an error at ``path``: the one that set it, or for an
    unknown key (a whole unknown section) every one beneath it."""
    if path in env_names:
        return env_names[path]
    if kind != "extra_forbidden":
        return ""
    return ", ".join(sorted(n for p, n in env_names.items() if p.startswith(f"{path}.")))


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = safe_load_limited(raw) if raw != "" else None
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return tree


def _env_names(environ: Mapping[str, str]) -> dict[str, str]:
    """Key path (``mqtt.port``) -> the APPLIANCE__ variable that set it, for error messages."""
    names = {}
    for name in environ:
        if name.upper().startswith(ENV_PREFIX):
            parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
            names[".".join(parts)] = name
    return names


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass --config FILE or create it)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        data = safe_load_limited(path.read_text(encoding="utf-8"))
    except YamlLimitError as exc:
        raise ConfigError(f"{path}: refused: {exc}") from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{path}: broken YAML at line {line}: {exc.problem}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not readable YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def config_from_mapping(
    data: Mapping[str, Any], source: str = "config", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a config mapping (plus environment overrides) into a Config."""
    environ = os.environ if environ is None else environ
    merged = _merge(dict(data), _env_overrides(environ))
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        problems = _format_errors(exc, _env_names(environ))
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(problems)) from exc


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; relative state_dir/model paths resolve against it."""
    file = Path(path)
    config = config_from_mapping(read_yaml(file), str(file), environ)
    return resolve_paths(config, file.resolve().parent)


def load_config_or_defaults(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> Config:
    """The config file ``path``; without one ./config.yaml when present, else built-in defaults
    (state in ./state, the shipped skin model), always with the APPLIANCE__ overrides."""
    if path is not None:
        return load_config(path, environ)
    if Path(DEFAULT_CONFIG_FILE).is_file():
        return load_config(DEFAULT_CONFIG_FILE, environ)
    from appliance.shipped import SKIN_MODEL, shipped_path  # noqa: PLC0415  (no cycle at import)

    defaults = {"model": {"path": str(shipped_path(SKIN_MODEL))}}
    config = config_from_mapping(defaults, "built-in defaults (no ./config.yaml)", environ)
    return resolve_paths(config, Path.cwd())


def missing_files(config: Config) -> list[str]:
    """Files the config names that do not exist (the daemon would refuse to start)."""
    tls = config.mqtt.tls
    named = {"model.path": config.model.path}
    if tls.enabled:
        named |= {"mqtt.tls.ca_file": tls.ca_file, "mqtt.tls.cert_file": tls.cert_file,
                  "mqtt.tls.key_file": tls.key_file}
    return [f"{key}: file not found: {value}" for key, value in named.items()
            if value is not None and not Path(value).is_file()]


def resolve_paths(config: Config, base: Path) -> Config:
    """Return the config with relative file paths made absolute against ``base``."""

    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    model = config.model.model_copy(update={"path": absolute(config.model.path)})
    screen = config.screen.model_copy(
        update={"reference_file": absolute(config.screen.reference_file)}
    )
    camera = config.camera
    if camera.source == "directory":
        camera = camera.model_copy(update={"path": absolute(camera.path)})
    updates = config.updates
    updates = updates.model_copy(update={"trusted_root": absolute(updates.trusted_root)})
    return config.model_copy(
        update={"state_dir": absolute(config.state_dir), "model": model, "camera": camera,
                "screen": screen, "updates": updates}
    )
