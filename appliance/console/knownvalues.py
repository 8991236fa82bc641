"""Filter values the back office has never heard of: refused, naming what it knows.

A site, device or grade that no kiosk and no stored result has would select nothing, and an
empty answer reads as "no results", which a typo (``grade=fien``) should not say. So such a
value is refused (InputError, 400) naming the field, the close names and the known ones: the
sites and device ids of the fleet registry (a kiosk enters it with its first status or
result), and the grades stored results carry or the shipped model gives (a grade no result
carries yet, ``coarse`` on a new fleet, is no typo). A known value that selects nothing (a
site with no results in the days asked for) is an empty answer, as before.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.store import Store
from appliance.console.filters import InputError
from appliance.modelbuild.labels import GRADE_LABELS

NAMES_SHOWN = 10  # known values a refusal lists; `appliance fleet` lists every kiosk
LABELS_READ = 100  # grades read for a refusal's list and close matches


def refuse_unknown_values(store: Store, where: ResultFilter) -> None:
    """Refuse (InputError) the first of site, device and grade in ``where`` that the back
    office does not know; nothing when each is known or not given."""
    if where.site is not None:
        _refuse_unknown_site(store, where.site)
    if where.device_id is not None:
        _refuse_unknown_device(store, where.device_id, where.site)
    if where.label is not None and where.label not in GRADE_LABELS and \
            not store.label_stored(where.label):
        known = list(GRADE_LABELS)
        known += [label for label in store.stored_labels(LABELS_READ) if label not in known]
        raise InputError("grade", where.label, _expected(
            where.label, "no stored result and not the shipped model has this grade",
            "the grades known", known))


def _refuse_unknown_site(store: Store, site: str) -> None:
    """Refuse a site no kiosk of the fleet registry is at."""
    sites = store.fleet_sites_of()
    if site not in sites:
        raise InputError("site", site, _expected(site, "no kiosk of the fleet is at this site",
                                                 "the fleet's sites", sites))


def _refuse_unknown_device(store: Store, device: str, site: str | None) -> None:
    at = store.fleet_sites_of(device)
    if not at:
        raise InputError("device", device, _expected(
            device, "no kiosk of the fleet has this device id",
            f"the device ids at {site}" if site else "the fleet's device ids",
            store.fleet_device_ids(site)))
    if site is not None and site not in at:
        raise InputError("device", device, f"no kiosk of this id is at site {site}; it is at "
                         f"{', '.join(at[:NAMES_SHOWN])}")


def _expected(value: str, what: str, known_as: str, known: Sequence[str]) -> str:
    """'no ...; did you mean X?; the ...: a, b, c and N more' for a refused ``value``."""
    if not known:
        return f"{what}; there are none yet"
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.6)  # a typo's likely aim
    meant = f"; did you mean {' or '.join(close)}?" if close else ""
    shown = ", ".join(known[:NAMES_SHOWN])
    more = f" and {len(known) - NAMES_SHOWN} more" if len(known) > NAMES_SHOWN else ""
    return f"{what}{meant}; {known_as}: {shown}{more}"
