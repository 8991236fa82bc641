"""Frame sources and the capture supervisor: customers, folder replay, failures, backoff."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.capture import sources
from appliance.capture.folder import DirectorySource
from appliance.capture.quality import QualityGate
from appliance.capture.sources import Frame, SourceError, UvcSource
from appliance.capture.supervisor import CaptureRunner
from appliance.capture.synthetic import CustomerScript, SyntheticSource
from appliance.edge.testing import FlakySource, wait_until
from appliance.synthetic.camera import textured_skin


def test_synthetic_customers_approach_rest_and_lift() -> None:
    script = CustomerScript(approach_frames=3, rest_frames=5, lift_frames=3)
    source = SyntheticSource(textured_skin(7), fps=0, script=script)
    source.open()
    gate = QualityGate()
    verdicts, previous = [], None
    for _ in range(2 * script.total_frames):
        frame = source.read()
        assert frame is not None
        verdicts.append(gate.assess(frame.rgb, previous).verdict)
        previous = frame.rgb
    first = verdicts[: script.total_frames]
    assert first[:3] == ["blurred"] * 3
    assert first[4:8] == ["ok"] * 4  # the first resting frame differs from the last blurred one
    assert first[8:] == ["no_contact"] * 3
    assert verdicts[script.total_frames + 4 : script.total_frames + 8] == ["ok"] * 4


def test_synthetic_source_is_paced_at_its_frame_rate() -> None:
    source = SyntheticSource(textured_skin(1), fps=50)
    source.open()
    started_s = time.monotonic()
    for _ in range(10):
        source.read()
    assert time.monotonic() - started_s >= 9 / 50


def _save_jpeg(path: Path, value: int) -> None:
    rgb = np.full((960, 1280, 3), value, dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)


def test_directory_replays_in_name_order_then_picks_up_new_files(tmp_path: Path) -> None:
    for name, value in (("0002.jpg", 20), ("0001.jpg", 10)):
        _save_jpeg(tmp_path / name, value)
    (tmp_path / "0003.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "notes.txt").write_text("not a frame")
    source = DirectorySource(str(tmp_path))
    source.open()
    frames = [source.read() for _ in range(3)]
    assert [f.name for f in frames if f is not None] == ["0001.jpg", "0002.jpg"]
    assert frames[2] is None  # the corrupt file is skipped with a warning
    assert all(f.still for f in frames if f is not None)
    _save_jpeg(tmp_path / "0004.jpg", 40)
    later = source.read()
    assert later is not None
    assert later.name == "0004.jpg"


def test_missing_folder_and_missing_camera_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="frames-missing"):
        DirectorySource(str(tmp_path / "frames-missing")).open()
    with pytest.raises(SourceError, match=r"/dev/no-such-scope.*plugged in"):
        UvcSource("/dev/no-such-scope").open()


def test_supervisor_reports_offline_and_reopens_a_failing_camera() -> None:
    flaky = FlakySource(SyntheticSource(textured_skin(3), fps=100))
    frames: queue.Queue[Frame] = queue.Queue(maxsize=2)
    stop = threading.Event()
    changes: list[bool] = []
    runner = CaptureRunner(
        flaky, frames, stop, reopen_initial_s=0.05, reopen_cap_s=0.2,
        on_camera_change=changes.append,
    )
    runner.start()
    try:
        # nobody consumes: the oldest frames make room
        assert wait_until(lambda: runner.online and runner.frames_dropped > 0, 10)
        flaky.failing.set()
        assert wait_until(lambda: not runner.online, 10)
        flaky.failing.clear()
        assert wait_until(lambda: runner.online, 10)
    finally:
        stop.set()
        runner.join(5)
    assert changes[:3] == [True, False, True]
    assert runner.failures >= 1


class SilentSource:
    description = "silent camera"

    def open(self) -> None:
        """Opens fine."""

    def read(self) -> Frame | None:
        time.sleep(0.01)
        return None

    def close(self) -> None:
        """Nothing to release."""


def test_a_camera_that_stops_delivering_frames_counts_as_failed() -> None:
    stop = threading.Event()
    runner = CaptureRunner(
        SilentSource(), queue.Queue(maxsize=2), stop, stall_s=0.2, reopen_initial_s=0.05,
        reopen_cap_s=0.1,
    )
    runner.start()
    try:
        assert wait_until(lambda: runner.failures >= 2, 10)  # reopened, and silent again
    finally:
        stop.set()
        runner.join(5)


def test_saved_files_are_never_dropped_by_a_full_queue(tmp_path: Path) -> None:
    names = [f"{i:04d}.jpg" for i in range(6)]
    for value, name in enumerate(names):
        _save_jpeg(tmp_path / name, 10 * value)
    frames: queue.Queue[Frame] = queue.Queue(maxsize=2)
    stop = threading.Event()
    runner = CaptureRunner(DirectorySource(str(tmp_path)), frames, stop, stall_s=None)
    runner.start()
    received = []
    try:
        while len(received) < len(names):
            time.sleep(0.1)  # a slow analysis thread: the queue fills up
            received.append(frames.get(timeout=10).name)
    finally:
        stop.set()
        runner.join(5)
    assert received == names
    assert runner.frames_dropped == 0


class _FakeCamera:
    """cv2.VideoCapture as a UVC camera that delivers ``pictures(n)`` as its n-th frame."""

    def __init__(self, pictures: Callable[[int], np.ndarray]) -> None:
        self.pictures, self.count = pictures, 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def set(self, _prop: int, _value: float) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        self.count += 1
        return True, self.pictures(self.count)

    def release(self) -> None:
        """Nothing to release."""


def _read_for(source: UvcSource, seconds: float) -> int:
    """Read frames for ``seconds`` (a camera's pace, 50 a second); how many came."""
    deadline_s, frames = time.monotonic() + seconds, 0
    while time.monotonic() < deadline_s:
        assert source.read() is not None
        frames += 1
        time.sleep(0.02)
    return frames


def test_a_camera_that_delivers_the_same_picture_for_frozen_s_counts_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A UVC camera whose firmware hangs can repeat its last picture: no live sensor does."""
    monkeypatch.setattr(sources, "FROZEN_S", 0.3)
    skin = textured_skin(4)(0)[..., ::-1].copy()  # BGR, 1280x960
    dark = (skin // 40).astype(np.uint8)  # the scope lifted: a dark field, the same rightly
    device = tmp_path / "video0"
    device.touch()
    cameras = {"frozen": _FakeCamera(lambda n: skin), "dark": _FakeCamera(lambda n: dark),
               "live": _FakeCamera(lambda n: np.roll(skin, n, axis=1))}
    for name in ("dark", "live"):
        monkeypatch.setattr(cv2, "VideoCapture", lambda *_a, c=cameras[name]: c)
        source = UvcSource(str(device))
        source.open()
        assert _read_for(source, 0.8) > 10, name  # never refused
    monkeypatch.setattr(cv2, "VideoCapture", lambda *_a: cameras["frozen"])
    frozen = UvcSource(str(device))
    frozen.open()
    with pytest.raises(SourceError, match=r"video0: the camera delivers the very same picture"):
        _read_for(frozen, 5.0)


class GarbageSource:
    """A camera that opens fine and delivers pictures the pipeline cannot take."""

    description = "garbage camera"

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb

    def open(self) -> None:
        """Opens fine."""

    def read(self) -> Frame | None:
        time.sleep(0.005)
        return Frame(self.rgb, 1)

    def close(self) -> None:
        """Nothing to release."""


NOT_COLOUR = "pictures that are not 8-bit colour"


@pytest.mark.parametrize(("rgb", "said"), [
    (np.zeros((960, 1280), np.uint8), f"{NOT_COLOUR} (960x1280, uint8)"),
    (np.zeros((960, 1280, 4), np.uint8), f"{NOT_COLOUR} (960x1280x4, uint8)"),
    (np.zeros((960, 1280, 3), np.float64), f"{NOT_COLOUR} (960x1280x3, float64)"),
    (np.zeros((960, 1280, 3), np.uint16), f"{NOT_COLOUR} (960x1280x3, uint16)"),
    (np.zeros((960, 1280, 3), bool), f"{NOT_COLOUR} (960x1280x3, bool)"),
    (np.zeros((0, 0, 3), np.uint8), "pictures of 0x0 px, below 16 px a side"),
    (np.zeros((4, 4, 3), np.uint8), "pictures of 4x4 px, below 16 px a side"),
])
def test_a_camera_delivering_pictures_the_pipeline_cannot_take_counts_as_failed(
    rgb: np.ndarray, said: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A grey, four-channel, 16-bit, float or empty picture went on to the quality gate, where
    OpenCV raised: the analysis thread ended and the daemon exited 1, to be restarted by
    systemd onto the same camera, for ever. Such a picture is never handed on now: the camera
    counts as failed (offline, reopened with backoff, the kiosk says so) and it is said why."""
    frames: queue.Queue[Frame] = queue.Queue(maxsize=2)
    stop = threading.Event()
    runner = CaptureRunner(GarbageSource(rgb), frames, stop, reopen_initial_s=0.05,
                           reopen_cap_s=0.1)
    with caplog.at_level("WARNING", logger="appliance.capture.supervisor"):
        runner.start()
        try:
            assert wait_until(lambda: runner.failures >= 2, 10)
        finally:
            stop.set()
            runner.join(5)
    assert frames.empty()
    assert runner.frames_captured == 0
    assert runner.failed
    assert f"camera failed: garbage camera: the camera delivers {said}; reopening" in caplog.text


def test_a_uvc_camera_in_a_grey_mode_is_refused_as_a_source_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A V4L2 camera left in a grey mode (GREY, Y16) delivers 1280x960 pictures of one channel:
    the size check passed them and OpenCV's colour conversion raised past the capture thread's
    SourceError handler, which ended the thread (the watchdog then killed the kiosk)."""
    device = tmp_path / "video0"
    device.touch()
    grey = _FakeCamera(lambda n: np.full((960, 1280), n % 200, np.uint8))
    monkeypatch.setattr(cv2, "VideoCapture", lambda *_a: grey)
    source = UvcSource(str(device))
    source.open()
    with pytest.raises(SourceError, match=r"video0: camera delivers pictures that are not 8-bit "
                       r"colour \(960x1280, uint8\); check the camera mode"):
        source.read()
