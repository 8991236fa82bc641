"""The base of every config section: unknown keys are errors and a loaded config is frozen."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

# What the templates in deploy/ hold where the operator puts this host's own value: CHANGE-ME,
# or a host under a domain reserved for examples. Both rules live here, for every role's keys.
TEMPLATE_PLACEHOLDER = "CHANGE-ME"


def filled_in(value: str, what: str) -> str:
    """``value``, unless it still holds a template's placeholder (deploy/config.edge.yaml's
    ``kiosk-CHANGE-ME``): passed, the kiosk logged in under a name no broker has and was told
    only that its credentials were refused."""
    if TEMPLATE_PLACEHOLDER in value:
        raise ValueError(f"got {value[:64]!r}, the template's placeholder: set {what}")
    return value


# domains reserved for examples (RFC 2606 sections 2 and 3): no broker or database is ever
# found under one, so a host there is a template's example left in place
EXAMPLE_DOMAINS = ("example", "example.com", "example.net", "example.org", "invalid")


# a DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123), no port
HOST_NAME = re.compile(r"^(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                       r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z")
# where a host is dialled, a name is taken as the resolver takes it (an underscore, as in a
# container network's mqtt_broker; an international name), short of what makes it no name at
# all: a scheme, a port, a path, a user, a blank, or a leading "-"
_NO_NAME = re.compile(r"[\s/:@\[\]?#]|^[-.]|^.{254,}")


def a_host(host: str, what: str) -> str:
    """``host`` when it is a host name or an IP address; refused naming what was written
    instead (a URL, a port, a blank): passed, ``mqtt://broker`` or ``broker:8883`` was
    looked up as a name, and the daemon retried an unreachable broker for ever."""
    name = host.lower().removesuffix(".")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        return host
    if not name or _NO_NAME.search(name):
        raise ValueError(f"got {host[:64]!r}: give {what} alone: a host name or an IP address, "
                         "no scheme, port, path or blank (e.g. 10.0.0.5, ::1 or "
                         "host.fleet.internal)")
    return host


def a_real_host(host: str, what: str) -> str:
    """``host``, unless it lies in a domain reserved for examples (deploy/'s templates'
    ``broker.example.org``): passed, a back office or pathology server started on the
    template retried a broker no network has, for ever, saying only that it was unreachable."""
    name = host.strip().lower().removesuffix(".")
    if any(name == domain or name.endswith(f".{domain}") for domain in EXAMPLE_DOMAINS):
        raise ValueError(f"got {host[:64]!r}, the template's example (a name reserved for "
                         f"examples, RFC 2606, that no host has): set {what}")
    return host


class Section(BaseModel):
    """A block of config.yaml; a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_no_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false (YAML's yes/no/on/off too) where a number goes: pydantic reads
        them as 1 and 0, so `port: true` dialled port 1 and `limit: yes` stopped after 1."""
        if isinstance(value, bool) and info.field_name is not None:
            members = _members(cls.model_fields[info.field_name].annotation)
            if members & {int, float} and not members & {bool, Any}:
                raise ValueError(f"got {str(value).lower()} (a yes/no value); expected a number")
        return value


def _members(annotation: Any) -> set[Any]:
    """The plain types an annotation is made of (``int | None`` -> {int, NoneType})."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_members(arg) for arg in typing.get_args(annotation)))
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    return {annotation}
