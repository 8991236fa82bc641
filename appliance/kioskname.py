"""A kiosk as the command line names one: DEVICE, or SITE/DEVICE (a site names its own kiosks,
so one device id may be at several sites), each id as kiosks have them (the result payload's
pattern).

One reading for every option that takes one (``results query|export --site/--device``,
``results dead-letters``, ``report cohort``, ``fleet resend --device``, ``models status
--history``, ``models deploy|rollback --devices/--site``), as argparse types: a value that
is none is refused before any store or broker is reached, argparse naming the option, the
refusal naming the value, the part at fault and what an id may hold. The console reads its
``site`` and ``device`` fields with the same types (console/filters.py), each value exactly
as given: ``demo `` is no site id, not ``demo``.
"""

# ruff: noqa: PLC0415  (the payload's pattern loads pydantic: on use, `appliance --help` starts fast)

from __future__ import annotations

import argparse
import re

from appliance.logsafe import SHOWN_ARGUMENT_CHARS, shorten_quoted

EXAMPLE = "lab/kiosk-1"


def device_id(text: str) -> str:
    """An argparse type: a device id (so an argument no store could match, bytes the locale
    cannot decode among them, is refused as such)."""
    return _checked_id(text, "device")


def site_id(text: str) -> str:
    """An argparse type: a site id, held to the device id's pattern (the payload's)."""
    return _checked_id(text, "site")


class KioskNameError(argparse.ArgumentTypeError):
    """A value refused as a site, a device or a kiosk; ``expected`` says what it is not and
    why, without the value (for a refusal that quotes it itself)."""

    def __init__(self, text: str, expected: str) -> None:
        super().__init__(f"{text!r}: {expected}")
        self.expected = expected


def kiosk_of(text: str) -> tuple[str | None, str]:
    """An argparse type: DEVICE or SITE/DEVICE as (its site, None when not given; its id)."""
    site, slash, device = text.partition("/")
    if not slash:
        if not is_id(text):
            raise _refusal(text, "a device id nor SITE/DEVICE", id_rule())
        return None, text
    return _site_device(text, site, device, "a device id nor SITE/DEVICE")


def kiosk_list(text: str) -> str:
    """An argparse type: kiosks separated by commas, each ``kiosk_of`` (blanks around one and
    empty places between commas are passed over, as ``models deploy --devices`` reads them);
    the text as given. The first that is none is refused in ``kiosk_of``'s words: a deploy
    took ``lab/kiosk 1`` to the broker and a new store, then called it a kiosk with no status
    yet."""
    named = [part.strip() for part in text.split(",") if part.strip()]
    if not named:
        raise argparse.ArgumentTypeError(
            f"{text!r} names no device; name them as comma-separated DEVICE or SITE/DEVICE")
    for part in named:
        kiosk_of(part)
    return text


def site_and_device(text: str) -> tuple[str, str]:
    """An argparse type: SITE/DEVICE as (its site, its id); a device id alone is refused, for
    a command that must name one kiosk of the fleet."""
    site, slash, device = text.partition("/")
    if not slash:
        raise _refusal(text, "SITE/DEVICE", f"no site: give it, e.g. {EXAMPLE}")
    return _site_device(text, site, device, "SITE/DEVICE")


def is_id(text: str) -> bool:
    """Whether ``text`` is a site or device id as kiosks have them (the payload's pattern)."""
    from appliance.transport.payloads import IDENTIFIER_PATTERN, MAX_IDENTIFIER_CHARS

    return len(text) <= MAX_IDENTIFIER_CHARS and re.fullmatch(IDENTIFIER_PATTERN, text) is not None


def id_rule() -> str:
    """What a site or device id may hold, for a refusal."""
    from appliance.transport.payloads import MAX_IDENTIFIER_CHARS

    return (f"letters, digits, '.', '_' and '-', starting with a letter or digit, at most "
            f"{MAX_IDENTIFIER_CHARS} characters")


def chosen_kiosks(site: str | None, kiosk: tuple[str | None, str] | None
                  ) -> tuple[str | None, str | None]:
    """The site and device id that a site (``site_id``) and a ``kiosk_of`` choose together,
    each None when not given; ValueError when the two name two sites (``lab`` and
    ``clinic/kiosk-1``)."""
    kiosk_site, device = kiosk or (None, None)
    if kiosk_site is not None and site is not None and kiosk_site != site:
        raise ValueError(f"{site} and {kiosk_site}/{device} name two sites")
    return kiosk_site or site, device


def chosen_text(site: str | None, device_id: str | None) -> str:
    """Whose results or letters ``--site`` and ``--device`` chose, in words (" from site
    'lab'"); empty when neither was given (everyone's)."""
    if site is not None and device_id is not None:
        return f" from kiosk {device_id!r} of site {site!r}"
    if site is not None:
        return f" from site {site!r}"
    return f" from device {device_id!r} (of any site)" if device_id is not None else ""


def _site_device(text: str, site: str, device: str, allowed: str) -> tuple[str, str]:
    """(site, device) of ``text`` split at its first slash, or its refusal as no ``allowed``."""
    if not is_id(site):
        raise _refusal(text, allowed, _no_id(site, "site"))
    if not is_id(device):
        raise _refusal(text, allowed, _no_id(device, "device"))
    return site, device


def _checked_id(text: str, what: str) -> str:
    """``text`` when it is an id; else refused as no ``what`` id."""
    if not is_id(text):
        raise KioskNameError(text, f"not a {what} id ({id_rule()})")
    return text


def _no_id(part: str, what: str) -> str:
    return f"{shorten_quoted(part, SHOWN_ARGUMENT_CHARS)} is no {what} id: {id_rule()}"


def _refusal(text: str, allowed: str, why: str) -> KioskNameError:
    """The one refusal of a kiosk's name: the value, what it is not, and why."""
    return KioskNameError(text, f"not {allowed} ({why})")
