"""A kiosk replaying a folder of saved captures into a full outbox whose policy is refuse_new:
the daemon on the machine's mosquitto (fast fake analyser) with no back office to empty the
outbox. A picture whose result the outbox refused is counted dropped once, whatever names it
has in the folder, and its result never arrives, also after a restart."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.capture.folder import DirectorySource
from appliance.capture.replayed import FileStamp
from appliance.capture.sources import Frame
from appliance.config import Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon, new_outbox
from appliance.edge.pipeline import measurement_id_for
from appliance.edge.plugins import REPLAYED_FILE
from appliance.edge.testing import fixed_analyzer, wait_until
from appliance.synthetic import fleet
from appliance.synthetic.camera import textured_skin
from appliance.transport.topics import device_topic

pytestmark = pytest.mark.broker
SITE, DEVICE = "lab", "kiosk-refuse"
OUTBOX_ROWS = 10  # the smallest outbox_max_rows


class NamesRead(DirectorySource):
    """The folder source, noting each file it hands on to be measured, and its reads."""

    def __init__(self, config: Config) -> None:
        assert config.camera.path is not None
        super().__init__(config.camera.path, Path(config.state_dir) / REPLAYED_FILE)
        self.names_read: list[str] = []
        self.reads = 0

    def read(self) -> Frame | None:
        frame = super().read()
        self.reads += 1
        if frame is not None:
            self.names_read.append(frame.name)
        return frame


def _config(tmp_path: Path, broker: Any, prefix: str) -> Config:
    data = {
        "device": {"id": DEVICE, "site": SITE},
        "camera": {"source": "directory", "path": str(tmp_path / "captures")},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "edge": {"outbox_max_rows": OUTBOX_ROWS, "outbox_policy": "refuse_new",
                 "ack_resend_initial_s": 1.0, "ack_resend_cap_s": 2.0},
    }
    return config_from_mapping(data, "test", environ={})


def _save_picture(folder: Path, name: str, seed: int) -> FileStamp:
    """A saved capture of its own picture (pictures of different seeds differ)."""
    folder.mkdir(exist_ok=True)
    assert cv2.imwrite(str(folder / name), textured_skin(seed)(0)[..., ::-1])
    return _stamp(folder / name)


def _stamp(path: Path) -> FileStamp:
    info = path.stat()
    return FileStamp(path.name, info.st_size, info.st_mtime_ns)


def _measurement_id(stamp: FileStamp) -> str:
    """The id a saved file's result has, whenever it is measured."""
    return measurement_id_for(DEVICE, Frame(np.zeros(1), 0, stamp=stamp))


def _fill_outbox(config: Config) -> list[str]:
    """Results waiting for the back office, as many as the outbox holds; their ids."""
    topic = device_topic(config.mqtt.topic_prefix, SITE, DEVICE, "result")
    waiting = [fleet.sample_result(random.Random(i), SITE, DEVICE, i) for i in range(OUTBOX_ROWS)]
    outbox = new_outbox(config)
    outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in waiting])
    outbox.close()
    return [r.measurement_id for r in waiting]


def _start(daemon: EdgeDaemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    return thread, codes


def _stop(daemon: EdgeDaemon, thread: threading.Thread) -> None:
    daemon.request_stop()
    thread.join(30)
    assert not thread.is_alive()


def test_a_picture_under_three_names_that_a_full_outbox_refused_is_counted_dropped_once(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    """Each next name of the dropped picture was read again, measured and dropped in turn."""
    config = _config(tmp_path, mqtt_broker, topic_prefix)
    folder = tmp_path / "captures"
    _save_picture(folder, "0001.jpg", 1)
    for name in ("0002.jpg", "0003.jpg"):  # hard links: the same picture under two more names
        (folder / name).hardlink_to(folder / "0001.jpg")
    _save_picture(folder, "0004.jpg", 4)
    waiting = _fill_outbox(config)
    source = NamesRead(config)
    kiosk = EdgeDaemon(config, source=source, analyzer=fixed_analyzer, stall_s=None)
    thread, _ = _start(kiosk)
    assert wait_until(lambda: kiosk.committer.refused == 2, 30)  # 0001 and 0004, full
    reads = source.reads
    assert wait_until(lambda: source.reads >= reads + 2, 30)  # what the refusal told, read
    kiosk.outbox.remove_ids(waiting[:1])  # the back office confirmed one: room for one result
    later = _save_picture(folder, "0005.jpg", 5)
    assert wait_until(lambda: kiosk.committer.committed == 1, 30)
    _stop(kiosk, thread)
    assert source.names_read == ["0001.jpg", "0004.jpg", "0005.jpg"]
    outbox = new_outbox(config)
    assert outbox.dropped() == 2  # two pictures, each counted once
    assert [message.measurement_id for message in outbox.pending()][-1:] == [
        _measurement_id(later)]  # the room went to the picture saved later
    outbox.close()


def test_a_result_a_full_outbox_refused_never_reaches_the_store_after_a_restart(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    """After a restart it was measured again under its id: stored once the outbox had room
    (while the kiosk still counted it dropped), or dropped and counted a second time."""
    config = _config(tmp_path, mqtt_broker, topic_prefix)
    folder = tmp_path / "captures"
    refused = _save_picture(folder, "0001.jpg", 1)
    waiting = _fill_outbox(config)
    kiosk = EdgeDaemon(config, source=NamesRead(config), analyzer=fixed_analyzer, stall_s=None)
    thread, _ = _start(kiosk)
    assert wait_until(lambda: kiosk.committer.refused == 1, 30)
    _stop(kiosk, thread)

    store = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    worker = IngestWorker(_backoffice_config(tmp_path, mqtt_broker, topic_prefix), store)
    worker.start()
    try:
        assert worker.subscribed.wait(10)
        source = NamesRead(config)
        again = EdgeDaemon(config, source=source, analyzer=fixed_analyzer, stall_s=None)
        thread, _ = _start(again)
        assert wait_until(lambda: again.outbox.depth() == 0, 60)  # the back office has all
        later = _save_picture(folder, "0002.jpg", 2)  # a customer after the restart
        assert wait_until(lambda: again.committer.committed == 1, 30)
        assert wait_until(lambda: again.outbox.depth() == 0, 60)
        _stop(again, thread)
        stored = {row[0] for row in store.query("SELECT measurement_id FROM results")}
    finally:
        worker.stop()
        store.close()
    assert source.names_read == ["0002.jpg"]
    assert stored == {*waiting, _measurement_id(later)}
    assert _measurement_id(refused) not in stored
    outbox = new_outbox(config)
    assert outbox.dropped() == 1  # still: what it counted never arrived
    outbox.close()


def _backoffice_config(tmp_path: Path, broker: Any, prefix: str) -> Config:
    return config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "backoffice"),
        "backoffice": {"client_id": f"bo-{prefix[-10:]}", "session_expiry_s": 60},
    }, environ={})
