"""The ``pathology:`` section of config.yaml: the pathology server, its batcher and backends."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from appliance.config.mqtt import MQTT_MAX_INTERVAL_S
from appliance.config.section import Section
from appliance.pathology.jobs import JOB_ID_LEVEL
from appliance.shipped import PATHOLOGY_MODEL, shipped_path
from appliance.transport.payloads import IDENTIFIER_PATTERN, MAX_IDENTIFIER_CHARS

# tiles of 3 bytes a pixel covering a slide of the 10^9-pixel decode bound
# (appliance/pathology/slides.py, MAX_SLIDE_PIXELS) at its own resolution
DEFAULT_MAX_TILE_BYTES = 3_000_000_000
Backend = Literal["torch-cuda", "onnx-cuda", "onnx-cpu", "torch-cpu"]
Precision = Literal["fp16", "bf16", "fp32"]


class PathologyConfig(Section):
    """Settings of ``appliance pathology serve`` (and of the ``job`` commands' topics)."""

    client_id: str | None = Field(
        None, max_length=MAX_IDENTIFIER_CHARS, pattern=IDENTIFIER_PATTERN,
        description="MQTT client id and server name, in job states, leases and presence "
        "(unset: pathology-HOSTNAME); unique per server.")
    slide_roots: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Folders a job's slides must lie in (after resolving "
        "links); a slide elsewhere is refused. With slide_roots_by_login, only for the logins "
        "it does not name, and only with unlisted_logins_use_slide_roots. Empty (and no "
        "slide_roots_by_login): every job is refused. Relative folders are relative to the "
        "config file.")
    slide_roots_by_login: dict[str, list[str]] = Field(
        default_factory=dict, description="Folders each job login's slides must lie in, in "
        "place of slide_roots (after resolving links): {lab-a: [/srv/slides/lab-a]}; the login "
        "is a job id's first level, its client's mqtt.username (anonymous with none). Empty: "
        "every login uses slide_roots. Relative folders are relative to the config file.")
    unlisted_logins_use_slide_roots: bool = Field(
        False, description="With slide_roots_by_login: whether a login it does not name may "
        "submit slides inside slide_roots; false: its jobs are refused, so a lab login "
        "forgotten there reads no other lab's slides.")
    results_dir: str = Field(
        "./state/pathology", min_length=1,
        description="Folder for heatmaps, CAMs and tile tables (the console serves the "
        "pictures from it); relative to the config file (without one: the working folder).")
    model: str = Field(default_factory=lambda: str(shipped_path(PATHOLOGY_MODEL)), min_length=1,
                       description="Float32 ONNX tile model (default: the shipped demo model); "
                       "relative to the config file.")
    int8_model: str | None = Field(None, min_length=1, description="INT8 variant for onnx-cpu "
                                   "(optional); relative to the config file.")
    backends: list[Backend] = Field(
        ["torch-cuda", "onnx-cpu"], min_length=1,
        description="Backends in order of preference; the first that loads is used.")
    precision: Precision = Field("fp16", description="torch-cuda arithmetic.")
    channels_last: bool = Field(True, description="torch: NHWC memory format for convolutions.")
    compile: bool = Field(False, description="torch: torch.compile the model (slow first batch).")
    cpu_threads: int = Field(0, ge=0, le=256, description="onnx-cpu threads (0: all cores).")
    max_batch: int = Field(64, ge=1, le=4096, description="Most tiles in one model call.")
    max_wait_ms: int = Field(20, ge=0, le=10_000,
                             description="Longest wait to fill a batch before running it (ms).")
    prepare_workers: int = Field(2, ge=1, le=64,
                                 description="Processes decoding, masking and tiling slides.")
    prepare_timeout_s: float = Field(
        900.0, ge=1.0, le=86_400.0,
        description="Longest one slide's preparation (decoding, masking, tiling) may take in "
        "its worker: past it the slide fails naming the limit, its worker is ended and a new "
        "one takes the next slide (a file slow to decode within every bound on its size).")
    max_tile_bytes: int = Field(
        DEFAULT_MAX_TILE_BYTES, ge=1_048_576, le=10**12,
        description="Most bytes one slide's tiles may take (tiles x tile_px^2 x 3): a slide "
        "whose tile grid needs more is refused before any tile is read, naming its tiles. "
        "The default, 3 GB, passes every slide the 10^9-pixel decode bound admits whose "
        "tiles are not enlarged (a model's tiles no finer than the slide); a slide in flight "
        "holds about 5 times its tiles (docs/pathology-server.md, Memory of a slide in "
        "flight).")
    max_pending_tiles: int = Field(
        4096, ge=1, description="Prepared tiles waiting for the model; slide preparation "
        "pauses above this (back-pressure when the model is the bottleneck).")
    max_running_jobs: int | None = Field(
        None, ge=1, le=10_000,
        description="Most jobs this server runs at once; it leaves further requests retained "
        "for other servers and takes them as its jobs end (unset: twice prepare_workers, "
        "enough one-slide jobs to keep every worker busy while others finish on the model).")
    max_retained_requests: int = Field(
        1000, ge=1, le=1_000_000,
        description="Most job requests left retained on the broker at once (waiting or "
        "running): a further one is refused and cleared as it comes, so one job client cannot "
        "fill the broker's memory (mosquitto bounds no client's retained messages). It bounds "
        "the refusal states a server leaves retained and the refusals the store keeps too.")
    max_retained_requests_per_login: int = Field(
        100, ge=1, le=1_000_000,
        description="Most of those a job login's requests may be (its share; the login is a "
        "job id's first level): a further one of its own is refused, so one login's flood "
        "cannot crowd out the others' requests, nor its refusals the others'. At most "
        "max_retained_requests (the default is capped at it); give it at least "
        "max_retained_requests divided by the number of job logins for each to be sure of "
        "its share.")
    max_slides_per_job: int = Field(1000, ge=1, le=100_000,
                                    description="A job naming more slides is refused.")
    max_job_bytes: int = Field(262_144, ge=1024, description="A larger job payload is refused.")
    final_state_keep_s: int = Field(
        7 * 86_400, ge=60, le=MQTT_MAX_INTERVAL_S,
        description="How long the broker keeps an ended job's retained state (done, failed, "
        "cancelled; MQTT 5 message expiry), so `job list` shows the jobs that ended within it "
        "and the broker does not grow with every job ever run (the store keeps them all).")
    lease_s: float = Field(30.0, ge=1.0, le=3600.0,
                           description="A running job whose server is silent this long is "
                           "taken over by another server.")
    metrics_port: int | None = Field(None, ge=0, le=65535,
                                     description="Prometheus metrics on this port (unset: off).")
    metrics_bind: str = Field(
        "127.0.0.1",
        description="Address the metrics listen on: 127.0.0.1 for a Prometheus on this host; "
        "an address of this host (or 0.0.0.0) for a remote one. /metrics has no login.")

    @field_validator("metrics_bind")
    @classmethod
    def _an_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{value!r} is no IP address (e.g. 127.0.0.1)") from None

    @field_validator("slide_roots_by_login")
    @classmethod
    def _logins_with_folders(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for login, roots in value.items():
            if not JOB_ID_LEVEL.match(login):
                raise ValueError(f"{login[:80]!r} is no job login: 1-64 of A-Z a-z 0-9 _ . -, "
                                 "starting with a letter or digit (a job id's first level)")
            if not roots or not all(roots):
                raise ValueError(f"{login}: give its folders as a list of 1 or more non-empty "
                                 f"paths (got {roots!r}); to refuse a login's jobs, leave it "
                                 "out with unlisted_logins_use_slide_roots false")
        return value

    def slide_roots_of(self, login: str) -> list[str]:
        """The folders a job login's slides must lie in: its own (slide_roots_by_login), else
        slide_roots where no login has its own or unlisted_logins_use_slide_roots says so,
        else none (its jobs are refused)."""
        if login in self.slide_roots_by_login:
            return self.slide_roots_by_login[login]
        if not self.slide_roots_by_login or self.unlisted_logins_use_slide_roots:
            return self.slide_roots
        return []

    @property
    def serves_slides(self) -> bool:
        """Whether this config names slide roots (a server's does; a kiosk's has none)."""
        return bool(self.slide_roots or self.slide_roots_by_login)

    @property
    def running_jobs_limit(self) -> int:
        """max_running_jobs, or twice prepare_workers when unset."""
        return self.max_running_jobs or 2 * self.prepare_workers

    @property
    def retained_requests_per_login_limit(self) -> int:
        """max_retained_requests_per_login, at most max_retained_requests."""
        return min(self.max_retained_requests_per_login, self.max_retained_requests)

    @model_validator(mode="after")
    def _check(self) -> PathologyConfig:
        if self.max_pending_tiles < self.max_batch:
            raise ValueError("pathology.max_pending_tiles must be at least pathology.max_batch")
        if "max_retained_requests_per_login" in self.model_fields_set and \
                self.max_retained_requests_per_login > self.max_retained_requests:
            raise ValueError(
                f"pathology.max_retained_requests_per_login ({self.max_retained_requests_per_login}"
                f") must be at most pathology.max_retained_requests ({self.max_retained_requests})"
                ": a login's share of the requests retained at once")
        self._check_unlisted_logins()
        return self

    def _check_unlisted_logins(self) -> None:
        """unlisted_logins_use_slide_roots means something only beside slide_roots_by_login,
        and true only with slide_roots to use."""
        if self.unlisted_logins_use_slide_roots and not self.slide_roots_by_login:
            raise ValueError(
                "pathology.unlisted_logins_use_slide_roots is true but "
                "pathology.slide_roots_by_login names no login: without it every login uses "
                "pathology.slide_roots; name each lab's login and folders there, or remove it")
        if self.slide_roots_by_login and self.unlisted_logins_use_slide_roots and \
                not self.slide_roots:
            raise ValueError(
                "pathology.unlisted_logins_use_slide_roots is true but pathology.slide_roots "
                "is empty: name the folders logins not in slide_roots_by_login may use, or "
                "set it false")
