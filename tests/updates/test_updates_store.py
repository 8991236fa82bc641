"""The kiosk's install store and health check, without a broker: every crash point, verdicts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from appliance.updates.health import HealthCheck, label_distance
from appliance.updates.install import Installed, ModelStore


def _model(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_a_crash_before_the_pointer_switch_keeps_the_old_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    old = _model(tmp_path / "old.onnx", b"old")
    download = _model(store.download_path("ab" * 32), b"new")
    # killed after the download, before install(): only a temp file is left
    assert store.serving_path(str(old)) == old
    # killed after the rename, before the pointer: an orphan model file is left
    orphan = store.dir / "skin-1.1.0-abababababab.onnx"
    download.rename(orphan)
    assert store.serving_path(str(old)) == old
    removed = store.clean(str(old))
    assert orphan in removed
    assert not orphan.exists()


def test_clean_keeps_the_configured_model_and_files_the_updater_did_not_write(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path)
    configured = _model(store.dir / "skin-1.0.0-0123456789ab.onnx", b"operator's")
    operators_spare = _model(store.dir / "skin-spare.onnx", b"spare")
    orphan = _model(store.dir / "skin-1.1.0-abababababab.onnx", b"orphan")
    download = _model(store.download_path("ab" * 32), b"part")
    pointer_temp = _model(store.dir / ".installed.json.x1y2", b"{")
    loop = store.dir / "skin-0.9.0-ffffffffffff.onnx"
    loop.symlink_to(loop)  # a link to itself: resolving it must not stop the clean-up
    removed = store.clean(str(configured))
    assert sorted(removed) == sorted([orphan, download, pointer_temp, loop])
    assert configured.read_bytes() == b"operator's"
    assert operators_spare.read_bytes() == b"spare"


def test_install_points_at_the_new_model_and_keeps_the_previous(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    old = _model(tmp_path / "old.onnx", b"old")
    download = _model(store.download_path("cd" * 32), b"new")
    final = store.install(download, "skin", "1.1.0", "cd" * 32, old)
    assert final.read_bytes() == b"new"
    assert store.read().current == final
    assert store.read().previous == old
    assert store.serving_path(None) == final
    store.rollback(final, old)
    assert store.read().current == old
    assert store.read().previous == final
    pointer = json.loads((store.dir / "installed.json").read_text())
    assert pointer == {"current": str(old), "previous": str(final)}


def test_a_missing_or_broken_pointer_falls_back_to_the_config_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    fallback = _model(tmp_path / "config.onnx", b"cfg")
    (store.dir / "installed.json").write_text("{not json")
    assert store.serving_path(str(fallback)) == fallback
    (store.dir / "installed.json").write_text("[" * 1000 + "]" * 1000)  # too deep to decode
    assert store.serving_path(str(fallback)) == fallback
    (store.dir / "installed.json").write_text(json.dumps(
        {"current": str(tmp_path / "gone.onnx"), "previous": str(fallback)}))
    assert store.serving_path(None) == fallback  # the current file vanished: previous serves


def test_label_distance_is_total_variation() -> None:
    assert label_distance({"fine": 4}, {"fine": 1.0}) == 0.0
    assert label_distance({"coarse": 2}, {"fine": 1.0}) == 1.0
    assert label_distance({"fine": 1, "normal": 1}, {"fine": 1.0}) == pytest.approx(0.5)


def test_health_check_verdicts() -> None:
    shares = {"fine": 0.5, "normal": 0.5}
    check = HealthCheck(shares, measurements=3, window_s=60, max_distance=0.6)
    check.observe("fine")
    check.observe("normal")
    assert check.verdict() is None
    check.observe("fine")
    verdict = check.verdict()
    assert verdict is not None
    assert verdict.healthy
    failing = HealthCheck(shares, measurements=3, window_s=60, max_distance=0.6)
    failing.observe("fine")
    failing.observe(None, "features are not finite numbers")
    verdict = failing.verdict()
    assert verdict is not None
    assert not verdict.healthy
    assert "classification failed after the swap" in verdict.reason
    far = HealthCheck(shares, measurements=2, window_s=60, max_distance=0.6)
    far.observe("coarse")
    far.observe("coarse")
    verdict = far.verdict()
    assert verdict is not None
    assert not verdict.healthy
    assert "distance 1.00 > 0.6" in verdict.reason


def test_a_quiet_kiosk_passes_after_the_window_without_errors() -> None:
    check = HealthCheck({"fine": 1.0}, measurements=20, window_s=0.05, max_distance=0.5)
    check.observe("fine")
    time.sleep(0.1)
    verdict = check.verdict()
    assert verdict is not None
    assert verdict.healthy
    assert "1 measurement(s) in the health window" in verdict.reason


def test_an_install_is_on_probation_until_confirmed_and_a_rollback_ends_it(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path)
    old = _model(tmp_path / "old.onnx", b"old")
    download = _model(store.download_path("ef" * 32), b"new")
    shares = {"fine": 0.75, "coarse": 0.25}
    final = store.install(download, "skin", "1.1.0", "ef" * 32, old, probation=shares)
    assert store.read().probation == shares  # a start before the verdict checks it again
    assert (store.count_start(), store.count_start(), store.read().probation) == (1, 2, shares)
    store.confirm()
    assert store.read() == Installed(final, old, None)
    other = _model(store.download_path("01" * 32), b"newer")
    newer = store.install(other, "skin", "1.2.0", "01" * 32, final, probation=shares)
    store.rollback(newer, final)
    assert (store.read().current, store.read().probation) == (final, None)
