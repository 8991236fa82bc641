"""The kiosk's installed models: files beside each other and one pointer file naming which serves.

``{state_dir}/models/`` holds each installed model as ``{name}-{version}-{sha12}.onnx`` and
``installed.json``: ``{"current": FILE, "previous": FILE}``, with, until the current one
passed its health check, ``"probation": {LABEL: SHARE}`` (the self-test's label shares),
``"starts"`` (kiosk starts on it since) and ``"rollout"`` (its assignment's): a kiosk killed
before the verdict checks its health again at start, assigned or not, and goes back after too
many starts without one. An install fsyncs the new model file, renames it into place, fsyncs
the folder and only then replaces ``installed.json`` the same way (temp file, fsync, rename).
A kiosk killed at any point finds either the old pointer (old model, the new file an orphan
removed at start) or the new one (new model, complete on disk): never no model. Rollback swaps
the pointer back to ``previous``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from appliance import safejson
from appliance.boundedread import read_bounded
from appliance.outfile import fsync_path
from appliance.updates.repofiles import write_atomically

log = logging.getLogger(__name__)

POINTER = "installed.json"
MAX_POINTER_BYTES = 64 * 1024  # two paths, a few label shares
DOWNLOAD_PREFIX = ".download-"
# what install() names a model: {name}-{version}-{sha256[:12]}.onnx
INSTALLED_NAME = re.compile(r".+-.+-[0-9a-f]{12}\.onnx")


@dataclass(frozen=True)
class Installed:
    """Which model file serves and which served before it (absolute paths)."""

    current: Path | None
    previous: Path | None
    # the label shares its health check expects while ``current`` has not passed it yet
    probation: Mapping[str, float] | None = None
    starts: int = 0  # kiosk starts on ``current`` while on probation
    rollout: str | None = None  # of the assignment ``current`` was installed for


class ModelStore:
    """Installed models under ``{state_dir}/models``; not thread-safe (the updater owns it)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir) / "models"
        self.dir.mkdir(parents=True, exist_ok=True)

    def read(self) -> Installed:
        """The pointer as stored (an unreadable pointer reads as nothing installed)."""
        path = self.dir / POINTER
        try:
            # read_bounded: a pipe put in its place would hold the kiosk's start for ever
            data = safejson.loads(read_bounded(path, MAX_POINTER_BYTES).decode("utf-8"))
            current, previous = data.get("current"), data.get("previous")
            probation = _label_shares(data.get("probation"))
            starts, rollout = int(data.get("starts", 0)), data.get("rollout")
        except FileNotFoundError:
            return Installed(None, None)
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.error("%s unreadable (%s); starting from the configured model", path, exc)
            return Installed(None, None)
        return Installed(
            Path(current) if current else None, Path(previous) if previous else None, probation,
            starts, rollout if isinstance(rollout, str) else None,
        )

    def serving_path(self, fallback: str | None) -> Path | None:
        """The model to start on: the installed current, else previous, else ``fallback``."""
        installed = self.read()
        for candidate in (installed.current, installed.previous):
            if candidate is not None and candidate.is_file():
                return candidate
        return Path(fallback) if fallback else None

    def download_path(self, sha256: str) -> Path:
        """Where a download goes first (a temp name that start-up clean-up removes)."""
        return self.dir / f"{DOWNLOAD_PREFIX}{sha256[:16]}.part"

    def install(self, downloaded: Path, name: str, version: str, sha256: str,
                previous: Path | None, *, probation: Mapping[str, float] | None = None,
                rollout: str | None = None) -> Path:
        """Move a verified download into place and point ``current`` at it atomically, on
        ``probation`` (the label shares its health check expects) until ``confirm``;
        ``rollout``: the assignment's, for the reports after a restart."""
        final = self.dir / f"{name}-{version}-{sha256[:12]}.onnx"
        fsync_path(downloaded)
        os.replace(downloaded, final)
        fsync_path(self.dir)
        self._point(final, previous, Installed(final, previous, probation, 0, rollout))
        return final

    def count_start(self) -> int:
        """One more start on the current model while on probation; how many so far."""
        installed = self.read()
        self._point(installed.current, installed.previous,
                    replace(installed, starts=installed.starts + 1))
        return installed.starts + 1

    def confirm(self) -> None:
        """The current model passed its health check: no probation left to resume."""
        installed = self.read()
        if installed.probation is not None:
            self._point(installed.current, installed.previous)

    def point_at(self, current: Path) -> None:
        """Serve ``current`` with nothing to go back to (a withdrawn release was left)."""
        self._point(current, None)

    def rollback(self, current: Path, previous: Path | None) -> None:
        """Point back at ``previous`` (the model that served before ``current``)."""
        self._point(previous, current)

    def _point(self, current: Path | None, previous: Path | None,
               on_probation: Installed | None = None) -> None:
        body: dict[str, object] = {
            "current": str(current) if current else None,
            "previous": str(previous) if previous else None,
        }
        if on_probation is not None and on_probation.probation is not None:
            body.update(probation=dict(on_probation.probation), starts=on_probation.starts,
                        rollout=on_probation.rollout)
        write_atomically(self.dir / POINTER, json.dumps(body).encode())
        fsync_path(self.dir)

    def clean(self, configured: str | Path | None) -> list[Path]:
        """Remove what the updater wrote and the pointer no longer names: its downloads, its
        pointer temporaries and its installed models (by their ``install`` name). Any other
        file is left, and so is ``configured`` (the config's ``model.path``, which an operator
        may place here). Each removal is logged; one that cannot be removed (a card remounted
        read-only, a folder of that name) is logged and left."""
        installed = self.read()
        named = [installed.current, installed.previous, Path(configured) if configured else None]
        # realpath: Path.resolve raises on a symlink loop (Python 3.11)
        keep = {os.path.realpath(path) for path in named if path is not None}
        stale = [path for path in self.dir.iterdir()
                 if _written_by_updater(path.name) and os.path.realpath(path) not in keep]
        removed = [path for path in stale if discard(path)]
        for path in removed:
            log.info("%s removed: left by an interrupted or superseded install", path)
        return removed


def _label_shares(stored: object) -> dict[str, float] | None:
    """A pointer's probation: label -> share (TypeError for anything else)."""
    if stored is None:
        return None
    if not isinstance(stored, dict) or not all(
            isinstance(label, str) and isinstance(share, int | float)
            for label, share in stored.items()):
        raise TypeError(f"probation is not label shares: {str(stored)[:80]}")
    return {label: float(share) for label, share in stored.items()}


def _written_by_updater(name: str) -> bool:
    return (INSTALLED_NAME.fullmatch(name) is not None
            or name.startswith((DOWNLOAD_PREFIX, f".{POINTER}.")))

def discard(path: Path) -> bool:
    """Remove ``path`` if it is there; False, logged, when it cannot be (a card the kernel
    remounted read-only says so even of a file that is not there, a folder of that name)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("%s: left in place, cannot remove it (%s)", path, exc.strerror or exc)
        return False
    return True
