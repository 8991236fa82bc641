"""The edge sections: who the kiosk is (``device:``), where its frames come from (``camera:``),
its on-device model (``model:``), the daemon's queues, outbox and supervision (``edge:``) and
the customer screen (``screen:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from appliance.config.mqtt import MQTT_MAX_INTERVAL_S
from appliance.config.section import Section, filled_in
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.transport.payloads import (
    IDENTIFIER_PATTERN,
    KEEP_CONFIRMED_DEFAULT_H,
    KEEP_CONFIRMED_MAX_H,
    MAX_IDENTIFIER_CHARS,
)
from appliance.transport.topics import PATHOLOGY_SITE


class DeviceConfig(Section):
    id: str = Field(
        "kiosk-dev-1",
        min_length=1,
        max_length=MAX_IDENTIFIER_CHARS,
        pattern=IDENTIFIER_PATTERN,
        description="Unique device id; part of every MQTT topic (letters, digits, _ . -).",
    )
    site: str = Field(
        "lab",
        min_length=1,
        max_length=MAX_IDENTIFIER_CHARS,
        pattern=IDENTIFIER_PATTERN,
        description="Site (shop, clinic) the kiosk stands in; part of every MQTT topic "
        f"('{PATHOLOGY_SITE}' is reserved: the pathology server's topics).",
    )

    @field_validator("id", "site")
    @classmethod
    def _not_the_template_s(cls, value: str, info: ValidationInfo) -> str:
        return filled_in(value, f"the {'device id' if info.field_name == 'id' else 'site'} "
                         "this kiosk was provisioned with (deploy/mosquitto/provision.py "
                         "--device SITE/DEVICE)")

    @model_validator(mode="after")
    def _site_not_reserved(self) -> DeviceConfig:
        if self.site == PATHOLOGY_SITE:
            raise ValueError(f"device.site {PATHOLOGY_SITE!r} is reserved: {{prefix}}/"
                             f"{PATHOLOGY_SITE}/... are the pathology server's topics; name the "
                             "site after the shop or clinic")
        return self


class CameraConfig(Section):
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


class ModelConfig(Section):
    path: str | None = Field(
        default_factory=lambda: str(shipped_path(SKIN_MODEL)), min_length=1,
        description="ONNX classifier of skin features (default: the shipped texture grader; "
        "null: no classification).",
    )


class EdgeConfig(Section):
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
    keep_confirmed_h: float = Field(
        KEEP_CONFIRMED_DEFAULT_H, ge=0, le=KEEP_CONFIRMED_MAX_H, description="How long a "
        "result the back office confirmed is kept in the outbox, to send again if its store is "
        "restored from a backup (`appliance fleet resend`); 0: deleted at once. Covers the "
        "nightly backup with a day's margin (hours). A kiosk's status says it where it is not "
        "48, and the back office asks the kiosk to forget an erased result for that long."
    )
    max_inflight: int = Field(
        1000, ge=1, le=65535, description="QoS 1 results published and not yet acknowledged."
    )
    message_expiry_s: int = Field(
        604_800, ge=60, le=MQTT_MAX_INTERVAL_S,
        description="MQTT message expiry of a result (s)."
    )
    session_expiry_s: int = Field(
        86_400, ge=60, le=MQTT_MAX_INTERVAL_S,
        description="How long the broker keeps this device's session (s)."
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, le=60, description="First broker reconnect delay (s); doubles per failure."
    )
    reconnect_cap_s: float = Field(
        5.0, gt=0, le=300, description="Longest broker reconnect delay (s)."
    )
    duplicate_retry_s: float = Field(
        600.0, ge=1, le=86_400, description="While another live kiosk uses this device id, this "
        "one (the later) stays off the broker and looks again this often (s)."
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


class ScreenConfig(Section):
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
        None, min_length=1,
        description="Age-band reference ranges from the cohort (`appliance console reference "
        "--out FILE`); unset: the result is shown without them.",
    )


