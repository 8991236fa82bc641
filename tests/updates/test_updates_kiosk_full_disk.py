"""A kiosk whose models folder is full: between the verified download and the pointer switch it
reports the install refused with the reason at once, keeps serving its model and leaves no file
the pointer does not name (room for the next try); after a failed health check it still goes
back to the previous model, saying the rollback holds in memory only. A models folder that is
read-only (an SD card the kernel remounted so) does not end the updater at its start."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from updates_helpers import Fleet

from appliance.edge.testing import wait_until
from appliance.inference.classifier import SkinClassifier
from appliance.transport.payloads import ModelState
from appliance.updates.install import ModelStore
from appliance.updates.kiosk import ModelUpdater
from appliance.updates.serving import ServingModel
from tests.disk_helpers import small_tmpfs


def _serving(tmp_path: Path) -> ServingModel:
    return ServingModel(SkinClassifier.load(tmp_path / "initial.onnx"))


@contextmanager
def _updater_on_a_small_disk(
    fleet: Fleet, serving: ServingModel, states: list[ModelState], stop: threading.Event,
    inodes: int,
) -> Iterator[tuple[ModelUpdater, Path]]:
    """Kiosk k1's updater, release 1.1.0 assigned to it, its models folder a tmpfs of
    ``inodes`` files and folders; its reported states go to ``states``."""
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    config = fleet.config("k1")
    with small_tmpfs(fleet.tmp / "disk", inodes=inodes) as disk:
        Path(config.state_dir).mkdir()
        (Path(config.state_dir) / "models").symlink_to(disk)
        yield ModelUpdater(config, serving, lambda raw: states.append(
            ModelState.model_validate_json(raw)), stop), disk


def test_a_full_models_folder_is_a_rejected_install_said_at_once(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str
) -> None:
    fleet = Fleet.start(tmp_path, mqtt_broker, topic_prefix)
    try:
        config, serving = fleet.config("k1"), _serving(tmp_path)
        states: list[ModelState] = []
        # two inodes: the folder and the download; the pointer's new file finds none free
        with _updater_on_a_small_disk(fleet, serving, states, threading.Event(),
                                      inodes=2) as (updater, disk):
            updater.check_once()
            left = sorted(path.name for path in disk.iterdir())
    finally:
        fleet.close()
    assert [state.state for state in states] == ["available", "downloading", "verified",
                                                 "rejected"]
    assert states[-1].reason == (f"could not install in {Path(config.state_dir) / 'models'}: "
                                 "No space left on device; the serving model stays")
    assert serving.version == "1.0.0"
    assert left == []  # neither the download nor the model file moved in before the pointer
    assert ModelStore(config.state_dir).read().current is None


def test_a_rollback_on_a_full_models_folder_still_goes_back_and_says_it_is_not_saved(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str
) -> None:
    fleet = Fleet.start(tmp_path, mqtt_broker, topic_prefix)
    stop = threading.Event()
    try:
        config, serving = fleet.config("k1"), _serving(tmp_path)
        states: list[ModelState] = []
        # three inodes: the folder, the model and the pointer; a new pointer finds none free
        with _updater_on_a_small_disk(fleet, serving, states, stop, inodes=3) as (updater, _):
            updater.start()
            assert wait_until(lambda: serving.version == "1.1.0", 30)
            with pytest.raises(ValueError, match="features lack"):
                serving.classify({})  # an error after the swap fails the health check
            assert wait_until(lambda: states[-1].state == "rolled_back", 30), states[-1]
            stop.set()
            updater.join(10)
    finally:
        stop.set()
        fleet.close()
    assert serving.version == "1.0.0"
    reason = states[-1].reason or ""
    assert reason.startswith("classification failed after the swap: features lack")
    assert reason.endswith(f"; rolled back in memory only: {Path(config.state_dir) / 'models'}"
                           "/installed.json could not be written (No space left on device), a "
                           "restart starts on 1.1.0 and checks its health again")


def test_leftovers_in_a_read_only_models_folder_are_left_and_the_updater_keeps_checking(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str
) -> None:
    fleet = Fleet.start(tmp_path, mqtt_broker, topic_prefix)
    stop = threading.Event()
    models = tmp_path / "k1" / "models"
    models.mkdir(parents=True)
    (models / ".download-0123456789abcdef.part").write_bytes(b"a download a kill -9 cut off")
    subprocess.run(["mount", "--bind", str(models), str(models)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(models)], check=True)
        fleet.assign(fleet.release("1.1.0"), ["k1"])
        states: list[ModelState] = []
        updater = ModelUpdater(fleet.config("k1"), _serving(tmp_path), lambda raw: states.append(
            ModelState.model_validate_json(raw)), stop)
        updater.start()
        assert wait_until(lambda: bool(states) and states[-1].state == "rejected", 30)
    finally:
        stop.set()
        subprocess.run(["umount", "-l", str(models)], check=False)
        fleet.close()
    assert updater.checks >= 1
    assert (states[-1].reason or "").startswith("download failed: ")
    assert "Read-only file system" in (states[-1].reason or "")
