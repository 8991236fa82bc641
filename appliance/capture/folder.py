"""The folder source: the JPEGs a microscope's own software saves in a folder, replayed in name
order, then those saved later or saved over.

A saved file that cannot be loaded is no failure of the folder: it is tried again later. A
folder that cannot be listed, or that stops answering, is: ``SourceError``.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np

from appliance.capture.folder_calls import (
    CaptureRefusedError,
    FolderCalls,
    NoAnswerError,
    Progress,
    file_stamps,
    jpeg_names,
    open_capture,
)
from appliance.capture.load_failures import LoadFailures
from appliance.capture.pictures_read import PicturesRead
from appliance.capture.replayed import FileStamp, ReplayRecord
from appliance.capture.saved_over import SavedOverWatch, picture_digest
from appliance.capture.sources import Frame, SourceError

log = logging.getLogger(__name__)
T = TypeVar("T")

DIRECTORY_POLL_S = 0.2
# A folder is listed again when its modification time moved (a file created, removed or
# renamed in it), and at least this often whatever its time says (a share's attribute cache)
RELIST_S = 5.0
# A listing taken this soon after the folder's last change may have missed a second change in
# the same tick of the folder's clock (FAT's ticks are 2 s): it is not trusted, the next poll
# lists again
COARSE_TICK_NS = 2_000_000_000
# A folder that makes no progress on a listing, a look at a file or a read for this long is
# offline (a network share that stopped answering); the daemon passes less where
# edge.watchdog_stall_s is short, so that waiting for it never starves the watchdog
FOLDER_ANSWER_S = 10.0


class DirectorySource:
    """Replays the JPEGs in a folder in name order, then picks up files saved later.

    The Scalar software saves one JPEG per capture with a time-ordered name, so name order is
    capture order. Each file is a still: measured on its own when it passes the quality gate,
    stamped with the file's modification time as its capture time.

    Each file gives one result whatever restarts: with ``record_path`` (the daemon passes
    ``state_dir/replayed.sqlite3``), the files whose results are committed are remembered
    durably (``ReplayRecord``, recorded by the commit thread through ``record_measured``) and
    skipped after a restart, and a file measured twice because a kill fell between the outbox
    commit and that record gets the same measurement id both times (``Frame.stamp``), so the
    back office keeps one result. A record on disk rather than ids alone, because re-measuring
    a years-old folder at every start would cost minutes of CPU and fill the outbox with copies.

    A file that cannot be loaded may still be being written: it is tried again once its size
    or modification time changes, or once after it has stayed unchanged for ``SETTLE_S``; a
    file still broken then is reported once and left alone until it changes
    (``LoadFailures``, capture/load_failures.py).

    One picture is measured once, under one name: a file that holds a picture already read
    under another name (a hard link, a copy, the file renamed) is not measured again, and is
    recorded measured once that picture's result is committed (the record keeps each picture's
    digest, so this holds after a restart too: ``PicturesRead``, capture/pictures_read.py).
    A picture that gave no result (the quality gate refused it, or its measurement failed;
    the analysis thread says so through ``record_not_measured``) was not read: a file holding
    it under another name is read again and measured then, not at the next start. A file
    whose result a commit the outbox refused (a full disk) dropped is read again itself (the
    commit thread says so through ``record_not_kept``), and measured once measuring resumes,
    under the same id: its result is not lost while the file is there.

    A file saved over in place (a new picture under the same name) is read again once per new
    picture: its size and modification time are looked at again (``SavedOverWatch``: the
    newest files at every poll, every file within a minute), and a file whose size or time
    moved is read as a new file is, so one still being written is tried again as above (a size
    and a time rather than the inode: a share's inode numbers may change when it is mounted
    again, and the size and time are what the record and the measurement id already hold).

    Every call on the folder's file system runs on one worker thread (``FolderCalls``): a
    share that stops answering makes the source fail (offline, naming the folder) after
    ``answer_s`` without progress, holds that one thread until it answers, and the source
    opens again once it does.
    """

    SETTLE_S = 2.0

    def __init__(
        self, folder: str, record_path: Path | None = None, answer_s: float = FOLDER_ANSWER_S
    ) -> None:
        self.folder = Path(folder)
        self.description = f"folder {folder}"
        self.record_path = record_path
        self._calls = FolderCalls(answer_s)
        self._offered: dict[str, FileStamp] = {}  # read this run, or measured in an earlier run
        self._saved_over = SavedOverWatch(DIRECTORY_POLL_S)
        self._pictures = PicturesRead()  # each picture measured once, under one name
        self._failures = LoadFailures(DIRECTORY_POLL_S, self.SETTLE_S)
        # files whose pictures gave no result (and whether to read the file itself again: its
        # result was not kept), from the analysis and commit threads
        self._not_measured: queue.SimpleQueue[tuple[FileStamp, bool]] = queue.SimpleQueue()
        self._refused: set[str] = set()  # links out of the folder, FIFOs...: named once
        self._listing: _Listing | None = None
        self._unread: list[str] = []  # the listed files not yet read, in name order
        self._unread_of: list[str] | None = None  # the listing _unread was worked out from
        self._count = 0

    def open(self) -> None:
        """Check the folder is there; load (and prune) the record of measured files."""
        self._listing = None  # list it afresh
        if not self._ask("a look at the folder", lambda _: self.folder.is_dir()):
            raise SourceError(f"{self.folder}: folder of frames not found; check camera.path")
        if self.record_path is not None and self._pictures.record is None:
            try:
                self._load_record(self.record_path)
            except (sqlite3.Error, OSError) as exc:
                raise SourceError(
                    f"{self.record_path}: cannot open the record of measured files ({exc}); "
                    "check that state_dir is writable and has room"
                ) from exc

    def _load_record(self, record_path: Path) -> None:
        """Skip the files whose results an earlier run committed; forget files gone."""
        record = ReplayRecord(record_path)
        names = self._names()
        measured = record.measured()
        if names:  # an empty listing may be an unmounted share: forget nothing then
            record.prune(set(names) | self._renamed_since(names, measured))
            measured = record.measured()
        stamps = self._stamps([name for name in names if name in measured])
        unchanged = {n: measured[n] for n, stamp in stamps.items() if stamp == measured[n]}
        self._offered |= unchanged
        self._saved_over.remember_newest(unchanged.values())
        self._pictures.record = record

    def _renamed_since(self, names: list[str], measured: dict[str, FileStamp]) -> set[str]:
        """Files measured and gone whose size and time a file not measured has (renamed while
        the kiosk was off?): kept in the record until that file is read, so that its picture
        is known there (the next start forgets them)."""
        listed = set(names)
        gone = {(s.size_bytes, s.mtime_ns): name for name, s in measured.items()
                if name not in listed}
        if not gone:
            return set()
        unmeasured = self._stamps([name for name in names if name not in measured])
        return {gone[key] for stamp in unmeasured.values() if stamp is not None
                and (key := (stamp.size_bytes, stamp.mtime_ns)) in gone}

    def read(self) -> Frame | None:
        """The next unmeasured JPEG in name order, or None (after a short wait) when none is
        ready."""
        names = self._names()
        self._read_again_not_measured()
        # an empty listing may be an unmounted share: forget nothing then (as _load_record)
        if names and len(self._offered) + len(self._failures) > 2 * len(names) + 64:
            self._forget_deleted(set(names))
        now_s = time.monotonic()
        self._notice_saved_over(names, now_s)
        for index, name in enumerate(self._unread_in(names)):
            stamp = self._stamp(name)
            if stamp is None or not self._failures.due(stamp, now_s):
                continue
            frame = self._load(stamp, now_s)
            if name in self._offered:
                del self._unread[index]
            return frame
        time.sleep(DIRECTORY_POLL_S)
        return None

    def _read_again_not_measured(self) -> None:
        """Read again the files waiting on a picture that gave no result, and the files whose
        results were not kept."""
        from appliance.skin.frames import shown_name  # noqa: PLC0415 - as _load: cv2

        while True:
            try:
                stamp, itself = self._not_measured.get_nowait()
            except queue.Empty:
                return
            self._saved_over.forget_picture(stamp)
            if itself and self._offered.get(stamp.name) == stamp:
                log.info("%s: its result was not kept (the outbox could not write); read again",
                         shown_name(self.folder / stamp.name))
                del self._offered[stamp.name]
                self._unread_of = None
            for twin in self._pictures.not_measured(stamp):
                self._saved_over.forget_picture(twin)
                if self._offered.get(twin.name) == twin:
                    log.info("%s: the same picture as %s, which gave no result; read again",
                             shown_name(self.folder / twin.name),
                             shown_name(stamp.name))
                    del self._offered[twin.name]
                    self._unread_of = None

    def _unread_in(self, names: list[str]) -> list[str]:
        """The listed files not read yet, worked out again only when the listing changed or a
        file is to be read again, so a poll of a quiet folder does not walk every name."""
        if self._unread_of is not names:
            self._unread = [name for name in names if name not in self._offered]
            self._unread_of = names
        return self._unread

    def _forget_deleted(self, names: set[str]) -> None:
        """Drop files no longer in the folder, so a kiosk running for years stays small."""
        self._offered = {n: s for n, s in self._offered.items() if n in names}
        self._failures.keep_only(names)
        self._pictures.keep_only(names)
        self._unread_of = None

    def _notice_saved_over(self, names: list[str], now_s: float) -> None:
        """Read again, as new, the files looked at whose size or time moved since read."""
        from appliance.skin.frames import shown_name  # noqa: PLC0415 - as _load: cv2

        looked = self._stamps(self._saved_over.names_to_look_at(names, now_s))
        for name, stamp in looked.items():
            offered = self._offered.get(name)
            if stamp is None:
                self._saved_over.forget(name)  # gone
            elif offered is not None and stamp != offered:
                log.info("%s: saved over in place; read again", shown_name(self.folder / name))
                del self._offered[name]
                self._unread_of = None

    def _names(self) -> list[str]:
        """The folder's JPEGs in name order, listed again only when the folder may have changed
        (``_Listing.stale``): listing a folder that holds years of captures five times a
        second took a share of a core from an idle kiosk."""
        try:
            # the folder's time before it is listed: a change during the listing shows next poll
            changed_ns = self._ask("a look at the folder", lambda _: self.folder.stat().st_mtime_ns)
            if self._listing is not None and not self._listing.stale(changed_ns):
                return self._listing.names
            listing = self._ask("a listing of the folder", lambda p: jpeg_names(self.folder, p))
        except OSError as exc:
            raise SourceError(f"{self.folder}: cannot list the folder ({exc})") from exc
        self._say_refused(listing.refused)
        names = listing.names
        self._listing = _Listing(names, changed_ns, time.time_ns(), time.monotonic())
        return names

    def _say_refused(self, refused: dict[str, str]) -> None:
        """Name each refused file once in the journal (again only once it was fine or gone)."""
        self._refused &= refused.keys()
        for name, why in sorted(refused.items()):
            self._refuse(name, why)

    def _refuse(self, name: str, why: str) -> None:
        from appliance.skin.frames import shown_name  # noqa: PLC0415 - as _load: cv2

        if name not in self._refused:
            log.warning("%s: %s; not read", shown_name(self.folder / name), why)
            self._refused.add(name)

    def _stamp(self, name: str) -> FileStamp | None:
        """A file's size and time; None for one gone between listing and now."""
        return self._stamps([name])[name]

    def _stamps(self, names: list[str]) -> dict[str, FileStamp | None]:
        if not names:
            return {}
        return self._ask("a look at its files", lambda p: file_stamps(self.folder, names, p))

    def _ask(self, what: str, work: Callable[[Progress], T]) -> T:
        """``work`` done on the folder's worker thread; a folder that does not answer fails
        the source, named, and is tried again by reopening it until it answers."""
        try:
            return self._calls.run(what, work)
        except NoAnswerError as exc:
            raise SourceError(f"{self.folder}: {exc} (a network share that stopped answering?); "
                              "opened again once it answers") from exc

    def _load(self, stamp: FileStamp, now_s: float) -> Frame | None:
        from appliance.skin.frames import (  # noqa: PLC0415 - cv2, loaded on the first read
            FRAME_HEIGHT_PX,
            FRAME_WIDTH_PX,
            FrameError,
            decode_frame,
            shown_name,
        )

        name = shown_name(self.folder / stamp.name)
        try:
            data = self._ask(f"a read of {name}", lambda p: self._read_bytes(stamp.name, name, p))
            rgb = decode_frame(data, name, (FRAME_HEIGHT_PX, FRAME_WIDTH_PX))
        except CaptureRefusedError as exc:  # replaced by a link or a FIFO since the listing
            self._refuse(stamp.name, str(exc))
            self._listing = None  # list again: the name is left out then
            return None
        except FrameError as exc:
            self._failed(stamp, now_s, exc)
            return None
        if self._stamp(stamp.name) != stamp:  # it changed while read: read it again once it rests
            self._failures.read_later(stamp, now_s)
            return None
        self._failures.loaded(stamp.name)
        self._offered[stamp.name] = stamp
        if not self._new_picture(stamp, rgb):
            return None
        self._count += 1
        saved_at = datetime.fromtimestamp(stamp.mtime_ns / 1e9, UTC)
        return Frame(rgb, self._count, saved_at, still=True, name=stamp.name, stamp=stamp)

    def _read_bytes(self, file_name: str, shown: str, progress: Progress) -> bytes:
        """The capture's bytes, read on the folder's worker thread (``open_capture``: no link
        out of the folder, no FIFO, even one swapped in after the listing)."""
        from appliance.skin.frames import read_frame_file  # noqa: PLC0415 - as _load: cv2

        return read_frame_file(lambda: open_capture(self.folder, file_name), shown, progress.made)

    def _new_picture(self, stamp: FileStamp, rgb: np.ndarray) -> bool:
        """Whether a file read holds a picture not read from it before (a file whose time
        alone moved, touched or copied over with its time kept, holds the same one)."""
        from appliance.skin.frames import shown_name  # noqa: PLC0415 - as _load: cv2

        digest = picture_digest(rgb)
        before = self._saved_over.read_before(stamp.name, digest)
        self._saved_over.remember(stamp, digest)
        shown = shown_name(self.folder / stamp.name)
        if before is not None:
            log.info("%s: saved again with the same picture; not measured again", shown)
        else:
            before = self._pictures.read_before(stamp, digest)
            if before is None:
                return True
            log.info("%s: the same picture as %s, read already (a second name, a copy or the "
                     "file renamed); not measured again", shown, shown_name(before.name))
        self._pictures.same_picture(before, stamp, digest)
        return False

    def _failed(self, stamp: FileStamp, now_s: float, error: Exception) -> None:
        if self._failures.failed(stamp, now_s):  # unchanged since: it is broken
            log.warning("skipped %s; tried again only if the file changes", error)
            return
        log.info("%s (still being written?); tried again when it changes or in %.0f s",
                 error, self._failures.settle_s)

    def record_measured(self, stamps: list[FileStamp]) -> None:
        """Remember files whose results the outbox has committed, or refused as full and counted
        dropped (called by the commit thread)."""
        self._pictures.committed(stamps)

    def record_not_measured(self, stamp: FileStamp) -> None:
        """Note a file whose picture gave no result: the gate refused it or its measurement
        failed (called by the analysis thread); its other names are read again."""
        self._not_measured.put((stamp, False))

    def record_not_kept(self, stamp: FileStamp) -> None:
        """Note a file whose result a commit the outbox refused dropped (called by the commit
        thread): the file is read again, as are its picture's other names."""
        self._not_measured.put((stamp, True))

    def close(self) -> None:
        """Let the worker thread end; files already read stay read, measured ones recorded."""
        self._calls.close()


@dataclass(frozen=True)
class _Listing:
    """One listing of the folder, with the folder's modification time just before it."""

    names: list[str]
    changed_ns: int
    listed_ns: int  # wall-clock time of the listing (the folder's times are wall-clock)
    listed_mono_s: float

    def stale(self, changed_ns: int) -> bool:
        """Whether to list again: the folder changed, RELIST_S passed, or the listing came so
        soon after a change that a second one in the same tick would not show."""
        if changed_ns != self.changed_ns or time.monotonic() - self.listed_mono_s >= RELIST_S:
            return True
        return self.listed_ns - self.changed_ns < COARSE_TICK_NS
