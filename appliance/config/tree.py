"""The whole configuration tree: one field per section of config.yaml."""

from __future__ import annotations

from pydantic import Field

from appliance.config.backoffice import BackofficeConfig, StoreConfig
from appliance.config.console import ConsoleConfig
from appliance.config.edge import (
    CameraConfig,
    DeviceConfig,
    EdgeConfig,
    ModelConfig,
    ScreenConfig,
)
from appliance.config.mqtt import MqttConfig
from appliance.config.pathology import PathologyConfig
from appliance.config.section import Section
from appliance.config.skin import SkinConfig
from appliance.config.updates import UpdatesConfig


class Config(Section):
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
