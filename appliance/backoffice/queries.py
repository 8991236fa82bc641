"""The store's queries for the console: filtered result pages, cohort sums, rollouts, jobs.

A mixin of ``Store`` (same connection, same SQL for SQLite and PostgreSQL), kept in its own
module so the ingest path in ``store.py`` stays small; console users, API tokens and login
sessions are the mixin's base in ``accounts.py``. Result pages use keyset pagination
(``keyset.py``) on ``(placed_at, measurement_id)``, newest first, so page N costs what page 1
costs; the indexes behind each filter are migration 22 in ``migrations.py``. A result is listed
and filtered by its capture as the back office placed it (placed_capture.py), not by its
kiosk's clock: a kiosk whose clock said 2000 has its results of today among today's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.backoffice.accounts import ConsoleAccounts
from appliance.backoffice.keyset import Keyset
from appliance.backoffice.schema import (
    DEVICE_READ_COLUMNS,
    GRADE_PROBABILITIES_SQL,
    PLACED_COLUMN,
    RESULT_READ_COLUMNS,
    result_selection,
)
from appliance.logsafe import shorten

ROLLOUT_COLUMNS = ("rollout_id", "model_name", "model_version", "decision", "scope", "canaries",
                   "state", "reason", "created_at", "updated_at")
PATHOLOGY_JOB_COLUMNS = ("job_id", "state", "owner", "reason", "takeovers", "submitted_at",
                         "accepted_at", "updated_at")
PATHOLOGY_SLIDE_COLUMNS = ("slide_index", "slide", "label", "score", "mean_probability",
                           "msi_tile_share", "tile_count", "in_distribution_share", "reason",
                           "error", "backend", "server", "stored_at", "heatmap_path", "cam_path")
NAME_CHARS = 100  # of a device's site/id where results lost from its dead letters are named
ROLLOUT_DEVICE_COLUMNS = ("site", "device_id", "phase", "state", "reason", "running_version",
                          "updated_at")
# the keyset each list is paged by (keyset.py): newest first, but kiosks by site and device id
RESULT_KEYS = Keyset((PLACED_COLUMN, "measurement_id"), descending=True)
DEVICE_KEYS = Keyset(("site", "device_id"), descending=False)
ROLLOUT_KEYS = Keyset(("created_at", "rollout_id"), descending=True)
JOB_KEYS = Keyset(("j.accepted_at", "j.job_id"), descending=True)

@dataclass(frozen=True)
class ResultFilter:
    """Which results a page or an export shows; every field is optional. The times bound
    each result's placed capture (``placed_at``)."""

    site: str | None = None
    device_id: str | None = None
    placed_from: str | None = None  # stored-time text, inclusive
    placed_before: str | None = None  # stored-time text, exclusive
    label: str | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions and their parameters (values are always bound, never pasted)."""
        pairs = (
            ("site = ?", self.site),
            ("device_id = ?", self.device_id),
            ("placed_at >= ?", self.placed_from),
            ("placed_at < ?", self.placed_before),
            ("label = ?", self.label),
        )
        chosen = [(sql, value) for sql, value in pairs if value is not None]
        return [sql for sql, _ in chosen], [value for _, value in chosen]


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters a listing shows: those that came on the topics of a site, of a
    device id at any site, or of one kiosk (both) under the fleet's topic ``prefix``
    (``{prefix}/{site}/{device}/...``); every letter when neither is given."""

    prefix: str
    site: str | None = None
    device_id: str | None = None

    def kiosk_topics_head(self) -> str | None:
        """What the topics of the site (or the kiosk) begin with; None without a site."""
        if self.site is None:
            return None
        return "/".join([self.prefix.rstrip("/"), self.site, *filter(None, [self.device_id]), ""])


@dataclass(frozen=True)
class ResultCount:
    """How many results match a filter: ``counted``, or more than that when ``more``."""

    counted: int
    more: bool

    def text(self) -> str:
        """'1,234 result(s)' or 'more than 10,000 result(s)'."""
        return f"{'more than ' if self.more else ''}{self.counted:,} result(s)"


@dataclass(frozen=True)
class PrunedOnlyCopies:
    """Results lost to the dead-letter bounds: in all, on how many devices, the worst ones."""

    letters: int
    devices: int
    worst: list[tuple[str, str, int, str]]  # site, device id, letters, last pruned at

    def text(self) -> str:
        """One line for people ('' when none was lost), the device names escaped."""
        if not self.letters:
            return ""
        named = ", ".join(f"{shorten(f'{site}/{device}', NAME_CHARS)} {letters} (last {at})"
                          for site, device, letters, at in self.worst)
        more = f" and {self.devices - len(self.worst)} more" if self.devices > len(
            self.worst) else ""
        return (f"LOST: the dead-letter bounds pruned {self.letters} refused result(s) whose "
                f"kiosk had dropped them (the letter was the only copy), on {self.devices} "
                f"device(s): {named}{more}")


def _checked(columns: Sequence[str]) -> str:
    unknown = set(columns) - set(RESULT_READ_COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}")
    return ",".join(columns)


def _measured_values(features: Sequence[str]) -> tuple[str, list[str]]:
    """Each feature as a column that is NULL where the result names it in ``not_validated``
    (outside the validated range: not measured, so left out of every figure), and the LIKE
    patterns to bind."""
    cases, patterns = [], []
    for key in _checked(features).split(","):
        cases.append(f"CASE WHEN not_validated = '' THEN {key} WHEN ',' || not_validated "
                     f"|| ',' LIKE ? ESCAPE '!' THEN NULL ELSE {key} END AS {key}")
        patterns.append("%," + key.replace("_", "!_") + ",%")
    return ", ".join(cases), patterns


def _measured_sums(features: Sequence[str]) -> str:
    """COUNT, SUM and sum of squares of each ``_measured_values`` column (NULLs left out)."""
    return ", ".join(f"COUNT({f}), SUM({f}), SUM({f}*{f})" for f in _checked(features).split(","))


class ConsoleQueries(ConsoleAccounts):
    """Read queries of the console (and, from its base, its access bookkeeping), mixed into
    ``Store``."""

    def page_results(
        self,
        columns: Sequence[str],
        where: ResultFilter,
        before: tuple[str, str] | None = None,
        limit: int = 50,
        after: tuple[str, str] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Results matching ``where``, newest placed capture first: the newest older than
        the ``before`` keyset cursor, or the oldest newer than the ``after`` one (still
        newest first)."""
        selection = result_selection(columns, self.postgres)
        return RESULT_KEYS.page(self._fetch, f"SELECT {selection} FROM results",
                                where.where(), limit, onward=before, back=after)

    def count_results_up_to(self, where: ResultFilter, at_most: int) -> ResultCount:
        """How many results match ``where``, counting at most ``at_most`` of them: the read
        stops at the cap, however many results the store holds."""
        conditions, params = where.where()
        matching = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # the cap written into the SQL, not bound: with an unknown LIMIT, PostgreSQL's generic
        # plan of a prepared statement reads the whole table instead of a filter's index
        counted = self._fetch(f"SELECT COUNT(*) FROM (SELECT 1 FROM results{matching} "
                              f"LIMIT {int(at_most) + 1:d}) AS capped", params)[0][0]
        return ResultCount(min(int(counted), at_most), int(counted) > at_most)

    def device_page(self, site: str | None, limit: int, after: tuple[str, str] | None = None,
                    before: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` devices (or one site's) by site and device id: the first after the
        ``after`` key (site, device id), or the last before the ``before`` key, or the first
        of all; one keyset page of the fleet, in that order either way."""
        rows = DEVICE_KEYS.page(
            self._fetch, f"SELECT {','.join(DEVICE_READ_COLUMNS)} FROM devices",
            (["site = ?"], [site]) if site is not None else ([], []), limit,
            onward=after, back=before)
        return [dict(zip(DEVICE_READ_COLUMNS, row, strict=True)) for row in rows]

    def count_devices(self, site: str | None) -> tuple[int, int]:
        """How many devices there are (or at one site), and how many of them are online."""
        where, params = (" WHERE site = ?", [site]) if site is not None else ("", [])
        total, online = self._fetch("SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = "
                                    f"'online' THEN 1 ELSE 0 END), 0) FROM devices{where}",
                                    params)[0]
        return int(total), int(online)

    def fleet_sites_of(self, device_id: str | None = None) -> list[str]:
        """The sites of the fleet registry (or those with a kiosk ``device_id``), in order."""
        where, params = (" WHERE device_id = ?", [device_id]) if device_id else ("", [])
        return [row[0] for row in self._fetch(
            f"SELECT DISTINCT site FROM devices{where} ORDER BY site", params)]

    def fleet_device_ids(self, site: str | None) -> list[str]:
        """The device ids of the fleet registry (or of one site's kiosks), in order."""
        where, params = (" WHERE site = ?", [site]) if site else ("", [])
        return [row[0] for row in self._fetch(
            f"SELECT DISTINCT device_id FROM devices{where} ORDER BY device_id", params)]

    def label_stored(self, label: str) -> bool:
        """Whether a stored result carries the grade ``label`` (read along its index)."""
        return bool(self._fetch("SELECT 1 FROM results WHERE label = ? LIMIT 1", (label,)))

    def stored_labels(self, at_most: int) -> list[str]:
        """Up to ``at_most`` grades (labels) stored results carry, in order: each read as the
        next one after the last along the label index, not by reading every result."""
        rows = self._fetch(
            "WITH RECURSIVE grades(label) AS ("
            "SELECT MIN(label) FROM results UNION ALL "
            "SELECT (SELECT MIN(label) FROM results WHERE label > grades.label) "
            f"FROM grades WHERE grades.label IS NOT NULL) "
            f"SELECT label FROM grades WHERE label IS NOT NULL LIMIT {int(at_most):d}")
        return [row[0] for row in rows]

    def result_row(self, measurement_id: str) -> dict[str, Any] | None:
        """One stored result by its measurement id, every column (its placed capture
        included), or None."""
        rows = self._fetch(
            f"SELECT {','.join(RESULT_READ_COLUMNS)} FROM results WHERE measurement_id = ?",
            (measurement_id,),
        )
        return dict(zip(RESULT_READ_COLUMNS, rows[0], strict=True)) if rows else None

    def result_payloads(self, measurement_ids: Sequence[str]) -> dict[str, str]:
        """The stored payloads (the result's JSON) of these results, by measurement id."""
        if not measurement_ids:
            return {}
        marks = ",".join("?" * len(measurement_ids))
        rows = self._fetch(f"SELECT measurement_id, payload FROM results "
                           f"WHERE measurement_id IN ({marks})", list(measurement_ids))
        return {row[0]: row[1] for row in rows}

    def grade_probabilities(self, measurement_ids: Sequence[str]) -> dict[str, str]:
        """The grade probabilities (JSON text) stored with these results, by measurement id,
        for those that have them: picked out in the database, not read with each payload."""
        if not measurement_ids:
            return {}
        marks = ",".join("?" * len(measurement_ids))
        rows = self._fetch(f"SELECT measurement_id, {GRADE_PROBABILITIES_SQL[self.postgres]} FROM "
                           f"results WHERE measurement_id IN ({marks})", list(measurement_ids))
        return {row[0]: row[1] for row in rows if row[1] is not None}

    def pruned_only_copies(self, limit: int,
                           where: ResultFilter | None = None) -> PrunedOnlyCopies:
        """The refused results the dead-letter bounds pruned whose only copy their letter was,
        in all and for the ``limit`` devices that lost most (store_writes.py counts them); of
        the site or device ``where`` names (its other fields are not read), or of all."""
        kiosk = ResultFilter(site=where.site, device_id=where.device_id) if where else None
        conditions, params = (kiosk or ResultFilter()).where()
        matching = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        total, devices = self._fetch(
            f"SELECT COALESCE(SUM(letters), 0), COUNT(*) FROM pruned_only_copies{matching}",
            params)[0]
        rows = self._fetch(f"SELECT site, device_id, letters, last_pruned_at FROM "
                           f"pruned_only_copies{matching} ORDER BY letters DESC, site, "
                           "device_id LIMIT ?", [*params, int(limit)])
        return PrunedOnlyCopies(int(total), int(devices),
                                [(str(a), str(b), int(n), str(at)) for a, b, n, at in rows])

    def band_sums(self, features: Sequence[str]) -> list[tuple[Any, ...]]:
        """Per age band: count, then each feature's count, sum and sum of squares over the
        results where it was measured (inside the validated range)."""
        values, patterns = _measured_values(features)
        return self._fetch(
            f"SELECT age_band, COUNT(*), {_measured_sums(features)} "
            f"FROM (SELECT age_band, {values} FROM results "
            "WHERE age_band IS NOT NULL) measured GROUP BY age_band",
            patterns,
        )

    def repeat_sums(self, features: Sequence[str], limit: int) -> list[tuple[Any, ...]]:
        """Subjects measured more than once (most first): id, count, devices, then each
        feature's count, sum and sum of squares where it was measured."""
        values, patterns = _measured_values(features)
        return self._fetch(
            f"SELECT subject_id, COUNT(*), COUNT(DISTINCT device_id), {_measured_sums(features)} "
            f"FROM (SELECT subject_id, device_id, {values} FROM results "
            "WHERE subject_id IS NOT NULL) measured GROUP BY subject_id HAVING COUNT(*) > 1 "
            "ORDER BY COUNT(*) DESC, subject_id LIMIT ?",
            [*patterns, int(limit)],
        )

    # -- model rollouts (tables of appliance/updates/rollout.py) --------------------------

    def rollout_rows(self, limit: int = 100, rollout_id: str | None = None,
                     before: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """The newest model rollouts (or the one named, or those after ``before``: the
        created_at and rollout_id of the last one a page showed), each with its devices per
        state."""
        rows = ROLLOUT_KEYS.page(
            self._fetch, f"SELECT {','.join(ROLLOUT_COLUMNS)} FROM rollouts",
            (["rollout_id = ?"], [rollout_id]) if rollout_id else ([], []), limit,
            onward=None if rollout_id else before)
        out = [dict(zip(ROLLOUT_COLUMNS, row, strict=True)) for row in rows]
        counts: dict[str, dict[str, int]] = {r["rollout_id"]: {} for r in out}
        if counts:
            marks = ",".join("?" * len(counts))
            for key, state, count in self._fetch(
                "SELECT rollout_id, state, COUNT(*) FROM rollout_devices "
                f"WHERE rollout_id IN ({marks}) GROUP BY rollout_id, state", list(counts)
            ):
                counts[key][state] = int(count)
        return [{**r, "devices": counts[r["rollout_id"]]} for r in out]

    def rollout_devices(self, rollout_id: str) -> list[dict[str, Any]]:
        """Where each device of one rollout stands, by phase (canary first) and device."""
        rows = self._fetch(
            f"SELECT {','.join(ROLLOUT_DEVICE_COLUMNS)} FROM rollout_devices "
            "WHERE rollout_id = ? ORDER BY phase, site, device_id",
            (rollout_id,),
        )
        return [dict(zip(ROLLOUT_DEVICE_COLUMNS, row, strict=True)) for row in rows]

    # -- pathology jobs (tables of appliance/pathology/jobstore.py) -----------------------

    def pathology_job_rows(self, limit: int = 100, job_id: str | None = None,
                           before: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """The newest pathology jobs (or the one named, or those after ``before``: the
        accepted_at and job_id of the last job a page showed), each with its stored slide
        count."""
        rows = JOB_KEYS.page(
            self._fetch, f"SELECT {','.join('j.' + c for c in PATHOLOGY_JOB_COLUMNS)}, "
            "(SELECT COUNT(*) FROM pathology_slides s WHERE s.job_id = j.job_id) "
            "FROM pathology_jobs j", (["j.job_id = ?"], [job_id]) if job_id else ([], []),
            limit, onward=None if job_id else before)
        return [{**dict(zip(PATHOLOGY_JOB_COLUMNS, row[:-1], strict=True)),
                 "slides_stored": int(row[-1])} for row in rows]

    def pathology_slide_rows(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored slide results (label, score, tiles, in-distribution share, reason)."""
        rows = self._fetch(
            f"SELECT {','.join(PATHOLOGY_SLIDE_COLUMNS)} FROM pathology_slides "
            "WHERE job_id = ? ORDER BY slide_index", (job_id,),
        )
        return [dict(zip(PATHOLOGY_SLIDE_COLUMNS, row, strict=True)) for row in rows]

    def pathology_picture_path(self, job_id: str, slide_index: int, column: str) -> str | None:
        """The heatmap or CAM path stored with one slide ('' when none), None if no such slide."""
        if column not in ("heatmap_path", "cam_path"):
            raise ValueError(f"{column!r} is no picture column of pathology_slides")
        rows = self._fetch(
            f"SELECT {column} FROM pathology_slides WHERE job_id = ? AND slide_index = ?",
            (job_id, int(slide_index)),
        )
        return str(rows[0][0]) if rows else None
