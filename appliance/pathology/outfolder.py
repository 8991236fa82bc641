"""The results folder (--out) of ``pathology run|submit``: one run at a time, never two mixed.

1. While a run lasts it holds an exclusive ``flock`` on the folder itself (no lock file is
   left behind; the kernel drops it at exit, kill -9 included; appliance/filelock.py), so a
   second run into the same folder is refused instead of writing between the first one's files.
2. An earlier run there (results.csv, run.json, heatmaps, CAMs or tile tables) is refused
   unless ``--force``: a reader of the folder would otherwise take one run's table beside
   another's pictures.
3. The run writes everything into a hidden stage folder inside --out (the same file system, so
   moving a file in is a rename) and publishes only when its results.csv and run.json are
   written. Publishing removes the earlier run's results.csv and run.json first, then its
   pictures and tile tables, moves the new ones in and results.csv last. A kill at any moment
   therefore leaves the earlier run whole or a folder without results.csv (an unfinished run,
   which the next run names), never a complete-looking mix. A stage left by a killed run is
   removed by the next run into the folder, under the lock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from appliance.filelock import (
    FileLock,
    LockBusyError,
    LockOpenError,
    LockUnsupportedError,
    exclusive_lock,
)

RESULTS_CSV = "results.csv"
RESULTS_JSON = "run.json"
HEATMAPS, CAMS, TILES = "heatmaps", "cams", "tiles"  # --out's folders: a file per slide
PICTURE_FOLDERS = (HEATMAPS, CAMS)
RUN_FILES = {HEATMAPS: "*.png", CAMS: "*.png", TILES: "*.csv"}  # what a run writes in each
STAGE_PREFIX = ".pathology-run-"


class ResultsFolderError(OSError):
    """--out cannot take this run: the message names the folder, why, and what to do."""


def skipped_when_finding_slides(out: Path) -> list[Path]:
    """The folders under --out whose images are a run's pictures, never slides (--out may lie
    in, or be, the slide folder): the picture folders and any stage folder."""
    stages = sorted(out.glob(f"{STAGE_PREFIX}*")) if out.is_dir() else []
    return [out / name for name in PICTURE_FOLDERS] + stages


def earlier_run(out: Path) -> list[str]:
    """What of an earlier run --out holds ("results.csv", "heatmaps/ (3 files)"), or []."""
    found = [name for name in (RESULTS_CSV, RESULTS_JSON) if os.path.lexists(out / name)]
    for folder in RUN_FILES:
        count = len(_run_files(out, folder))
        if count:
            found.append(f"{folder}/ ({count} file{'s' * (count != 1)})")
    return found


def earlier_run_refusal(out: Path, force: bool) -> str | None:
    """Why a run must not write into ``out`` without --force (None when it may)."""
    found = earlier_run(out) if out.is_dir() else []
    if not found or force:
        return None
    unfinished = "" if RESULTS_CSV in found else ", no results.csv: a run that did not finish"
    return (f"--out {out} holds an earlier run ({', '.join(found)}{unfinished}); pass --force "
            "to replace it, or name another folder")


def inputs_inside_replaced(out: Path, inputs: list[Path], what: str) -> str | None:
    """Why a run must not write into ``out`` because an input (``what``: "the slides folder",
    "the slide") lies in one of the folders whose files a run replaces or removes (heatmaps/,
    cams/, tiles/, a stage), links followed; None when none does. Publishing would delete
    it, and a stage is removed at the start."""
    real_out = Path(os.path.realpath(out))
    replaced = [real_out / folder for folder in RUN_FILES]
    if real_out.is_dir():
        replaced += list(real_out.glob(f"{STAGE_PREFIX}*"))
    for given in inputs:
        real = Path(os.path.realpath(given))
        for folder in replaced:
            if real.is_relative_to(folder):
                return (f"{what} {given} lies inside --out {out} (in {folder.name}/, whose "
                        "files a run replaces: the slides would be deleted); name another "
                        "--out, or move the slides out of it")
    return None


class ResultsFolder:
    """--out, locked for one run, with the stage folder the run writes into."""

    def __init__(self, out: Path, force: bool) -> None:
        """Lock ``out`` (made if missing), refuse an earlier run without ``force``, remove any
        killed run's stage and make this run's; ResultsFolderError names what stood in the way."""
        self.out = out
        self.stage = out  # until the stage is made: nothing of it to remove
        self._lock = _locked(out)
        try:
            self._check(force)
            for stage in out.glob(f"{STAGE_PREFIX}*"):  # a killed run's: never published
                if stage.is_dir() and not stage.is_symlink():
                    shutil.rmtree(stage)
            self.stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out))
        except OSError as exc:
            self.close()
            if isinstance(exc, ResultsFolderError):
                raise
            raise ResultsFolderError(f"--out {out}: cannot write in it ({exc.strerror or exc}); "
                                     "choose a writable folder") from exc

    def _check(self, force: bool) -> None:
        if refusal := earlier_run_refusal(self.out, force):
            raise ResultsFolderError(refusal)
        for folder in RUN_FILES:
            path = self.out / folder
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                raise ResultsFolderError(f"--out {self.out}: {path} is no folder of a run's "
                                         f"{folder} (a link or a file); move it away")

    def publish(self) -> None:
        """Replace the earlier run, if any, with the stage's (module docstring, step 3)."""
        for name in (RESULTS_CSV, RESULTS_JSON):
            (self.out / name).unlink(missing_ok=True)
        self._sync()  # the earlier run is no longer complete before anything moves
        for folder in RUN_FILES:
            self._replace_files(folder)
        os.replace(self.stage / RESULTS_JSON, self.out / RESULTS_JSON)
        self._sync()
        os.replace(self.stage / RESULTS_CSV, self.out / RESULTS_CSV)
        self._sync()

    def _sync(self) -> None:
        """The folder's entries (removals, renames) on disk, in the order they were made."""
        assert self._lock.fd is not None, "the results folder was closed"
        os.fsync(self._lock.fd)

    def _replace_files(self, folder: str) -> None:
        for old in _run_files(self.out, folder):
            old.unlink()
        new = _run_files(self.stage, folder)
        target = self.out / folder
        if new:
            target.mkdir(exist_ok=True)
        elif target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        for path in new:
            os.replace(path, target / path.name)

    def close(self) -> None:
        """Remove the stage (what is left of it) and drop the lock."""
        if self.stage != self.out:
            shutil.rmtree(self.stage, ignore_errors=True)  # the next run removes what this cannot
            self.stage = self.out
        self._lock.release()

    def __enter__(self) -> ResultsFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _locked(out: Path) -> FileLock:
    """The exclusive lock of ``out`` (made if missing), held on the folder itself."""
    try:
        return exclusive_lock(out, folder=True)
    except LockOpenError as exc:
        raise ResultsFolderError(f"--out {out}: cannot make or open it ({exc.strerror}); "
                                 "choose a writable folder") from exc
    except LockBusyError as exc:
        raise ResultsFolderError(f"--out {out}: another pathology run or submit is writing into "
                                 "it now; wait for it to end, or name another folder") from exc
    except LockUnsupportedError as exc:
        raise ResultsFolderError(f"--out {out}: cannot lock it ({exc.strerror}); a run "
                                 "locks its results folder: name one on a local disk") from exc


def _run_files(folder: Path, name: str) -> list[Path]:
    """The files a run writes in folder/name (its PNGs or CSVs), none when it is no folder."""
    path = folder / name
    if path.is_symlink() or not path.is_dir():
        return []
    return sorted(p for p in path.glob(RUN_FILES[name]) if p.is_file() or p.is_symlink())
