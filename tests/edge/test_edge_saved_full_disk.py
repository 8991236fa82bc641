"""A kiosk replaying a folder of saved captures whose state_dir fills up (a small real disk: a
tmpfs): a saved capture whose commit the full disk refused is no loss, as the file is still
there: it is read again and measured once measuring resumes, and it is not counted dropped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from appliance.capture.replayed import FileStamp
from appliance.capture.sources import Frame
from appliance.config import Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.pipeline import measurement_id_for
from appliance.edge.testing import ResultCollector, fast_daemon, wait_until
from appliance.synthetic.camera import textured_skin
from tests.disk_helpers import fill, small_tmpfs

pytestmark = pytest.mark.broker
SITE, DEVICE = "lab", "kiosk-saved-full"
MOST_SAVED = 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as disk:
        yield disk


def _config(state: Path, folder: Path, broker: Any, prefix: str) -> Config:
    data = {
        "device": {"id": DEVICE, "site": SITE},
        "camera": {"source": "directory", "path": str(folder)},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(state),
    }
    return config_from_mapping(data, "test", environ={})


def _save_picture(folder: Path, name: str, seed: int) -> str:
    """A saved capture of its own picture; the measurement id its result has."""
    assert cv2.imwrite(str(folder / name), textured_skin(seed)(0)[..., ::-1])
    info = (folder / name).stat()
    stamp = FileStamp(name, info.st_size, info.st_mtime_ns)
    return measurement_id_for(DEVICE, Frame(np.zeros(1), 0, stamp=stamp))


def _start(daemon: EdgeDaemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return thread


def test_a_saved_capture_whose_commit_a_full_disk_refused_is_measured_again_not_lost(
    small_disk: Path, tmp_path: Path, mqtt_broker: Any, topic_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It was counted dropped, and reached the back office all the same: under the same id
    after a restart, or under a second name of its picture once measuring resumed."""
    folder = tmp_path / "captures"
    folder.mkdir()
    received = ResultCollector(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#",
                               f"c-{topic_prefix[-10:]}")
    kiosk = fast_daemon(_config(small_disk / "state", folder, mqtt_broker, topic_prefix))
    thread = _start(kiosk)
    try:
        # the record of measured files open in state_dir, before the disk fills
        assert wait_until(lambda: kiosk.link.connected and kiosk.capture.online, 30)
        filler = fill(small_disk)
        saved: list[str] = []
        with caplog.at_level(logging.INFO, logger="appliance.edge.committer"):
            while kiosk.committer.refused == 0 and len(saved) < MOST_SAVED:
                # the outbox's log has room for a few commits more on the full disk
                saved.append(_save_picture(folder, f"{len(saved):04d}.jpg", len(saved)))
                assert wait_until(lambda: kiosk.committer.committed + kiosk.committer.refused
                                  == len(saved), 30)
        assert kiosk.committer.refused == 1, "no commit was refused on the full disk"
        assert kiosk.measuring_paused.is_set()
        assert kiosk.outbox.dropped() == 0  # the file is still there: nothing is lost
        refused = saved[-1]
        said = [r.getMessage() for r in caplog.records if refused in r.getMessage()]
        assert len(said) == 1
        assert "its saved file is measured again once the outbox can write" in said[0]
        filler.unlink()  # the disk has room again
        assert wait_until(lambda: refused in received.ids(), 30)
        assert wait_until(lambda: kiosk.outbox.depth() == 0, 30)
        assert kiosk.outbox.dropped() == 0
    finally:
        kiosk.request_stop()
        thread.join(15)
        received.close()
    assert kiosk.committer.committed == len(saved)
    assert received.ids() == set(saved)
