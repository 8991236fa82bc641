"""The ``updates:`` section: the kiosk's verified remote model updates (TUF) and health check."""

from __future__ import annotations

from pydantic import Field, model_validator

from appliance.config.section import Section

UPDATES_URL_PATTERN = r"^https?://"


class UpdatesConfig(Section):
    url: str | None = Field(
        None,
        pattern=UPDATES_URL_PATTERN,
        description="Base URL of the TUF model repository (metadata/ and targets/ under it); "
        "unset: no remote model updates.",
    )
    trusted_root: str | None = Field(
        None, min_length=1,
        description="The repository's root metadata file this kiosk starts trusting from."
    )
    check_interval_s: float = Field(
        3600.0, ge=1.0, description="Seconds between refreshes when no notice arrives."
    )
    device_type: str = Field(
        "skin-kiosk", min_length=1, max_length=64, description="Matched against a release's "
        "compatible device types."
    )
    download_tries: int = Field(3, ge=1, le=10, description="Tries per download (cut transfers).")
    # both bound waits of the download's threads and sockets: a timeout past what those take
    # (about 9.2e9 s) failed every download ("Failed to download"), or killed the deadline's
    # timer thread on each one, while config check said ok
    download_timeout_s: int = Field(30, ge=1, le=3600, description="Socket timeout of one "
                                    "download: the longest wait for its next bytes (s).")
    download_deadline_s: float = Field(
        600.0, gt=0.0, le=86_400.0, description="Most seconds one file's exchange (connecting, the "
        "answer's headers, the body) may take however its bytes trickle in (each try; a "
        "50 MB model needs about 85 kB/s within the default)."
    )
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
