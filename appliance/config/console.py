"""The ``console:`` section: the back-office web console and HTTP API."""

from __future__ import annotations

from pydantic import Field

from appliance.config.section import Section


class ConsoleConfig(Section):
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
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed logins a user name may have within "
        "login_window_s before its next attempts are refused (an address: 4 times as many)."
    )
    login_window_s: float = Field(
        900.0, ge=1, le=86_400, description="The window failed logins are counted over (s)."
    )
