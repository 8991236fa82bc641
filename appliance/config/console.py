"""The ``console:`` section: the back-office web console and HTTP API."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from appliance.config.mqtt import this_host
from appliance.config.section import HOST_NAME, Section, a_host


class ConsoleConfig(Section):
    bind: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the back-office console listens on (loopback by default; put a "
        "TLS reverse proxy in front to serve others, see README).",
    )
    port: int = Field(8080, ge=1, le=65535, description="Console TCP port.")
    allow_plain_http: bool = Field(
        False, description="Serve a bind that is not loopback without a TLS proxy named in "
        "trusted_proxies, passwords and session cookies in clear; refused unless true."
    )
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
    answers_in_flight_per_user: int = Field(
        8, ge=1, le=48, description="Answers one logged-in user (all its sessions and API "
        "tokens) may have being sent at once; one more is refused 429 with Retry-After. 8: a "
        "browser's 6 connections to a host and two more; raise it for a login an office shares. "
        "At most 48, so 16 of the console's 64 places are always left to other users.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, max_length=64,
        description="Addresses or networks (127.0.0.1, 10.0.0.0/24) of the reverse proxies "
        "whose X-Forwarded-For and X-Forwarded-Proto the console believes. None by default: "
        "a client cannot name the address its failed logins count against. A proxy on this "
        "host: [127.0.0.1] (then any local user can name one too: see README).",
    )

    server_names: list[str] = Field(
        default_factory=list, max_length=64,
        description="Host names the console answers to besides IP addresses, localhost and "
        "the name bind gives: "
        "the name a reverse proxy passes on as the request's Host (Caddy does; "
        "[console.example.org]). A request naming any other host is refused, so a web page "
        "whose name its owner points at this host (DNS rebinding) cannot reach the console.",
    )

    @field_validator("bind")
    @classmethod
    def _an_address_or_name(cls, value: str) -> str:
        """An address or host name alone: ``127.0.0.1:8080`` was refused as "not loopback",
        with advice on TLS proxies, for a port written in the wrong key."""
        return a_host(value, "the address to listen on (its port goes in console.port)")

    @field_validator("server_names")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        """Each entry a DNS name, kept in lower case without a final dot (as compared)."""
        names = []
        for entry in value:
            name = entry.strip().lower().removesuffix(".")
            if not HOST_NAME.match(name):
                raise ValueError(f"{entry[:60]!r} is no host name; write a name such as "
                                 "console.example.org (no scheme, port or wildcard)")
            names.append(name)
        return names

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        """Each entry as a network (an address: its own /32 or /128), so uvicorn matches it;
        uvicorn takes a host-bits network such as 10.0.0.5/24 as a name that never matches."""
        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{entry[:60]!r} is no IP address or network; write e.g. "
                                 "127.0.0.1, ::1 or 10.0.0.0/24") from exc
        return networks

    def plain_http_refusal(self) -> str | None:
        """Why the console does not start on ``bind``, or None: an address others reach with
        no TLS proxy named in front (``trusted_proxies``; or only proxies on this host, which
        reach it on loopback while others reach it past them) serves logins and session cookies
        in clear to the network, unless ``allow_plain_http`` says to. ``config check`` says it
        too, so a config checked before it is installed is refused as the start would refuse it."""
        if this_host(self.bind) or self.allow_plain_http:
            return None
        bind = self.bind[:100]
        if not self.trusted_proxies:
            return (f"console.bind is {bind}, not loopback, and console.trusted_proxies names no "
                    "TLS proxy: passwords and session cookies would cross the network in clear; "
                    "keep console.bind at 127.0.0.1 behind a TLS reverse proxy and name it in "
                    "console.trusted_proxies (README, Back-office console, TLS), or set "
                    "console.allow_plain_http: true to serve plain HTTP anyway")
        if all(_loopback(entry) for entry in self.trusted_proxies):
            return (f"console.bind is {bind}, not loopback, while console.trusted_proxies names "
                    f"proxies on this host only ({', '.join(self.trusted_proxies)[:200]}), "
                    "which reach the console on loopback: others would reach it past them, "
                    "passwords and session cookies in clear; set console.bind: 127.0.0.1 "
                    "(README, Back-office console, TLS), or console.allow_plain_http: true to "
                    "serve plain HTTP anyway")
        return None


def _loopback(network: str) -> bool:
    """Whether every address of ``network`` (as trusted_proxies keeps it) is a loopback one."""
    parsed = ipaddress.ip_network(network)
    return parsed.network_address.is_loopback and parsed.broadcast_address.is_loopback
