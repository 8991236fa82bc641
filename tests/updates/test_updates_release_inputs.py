"""`models release` of a model that reads some of the measured features, in an order of its
own: the self-test is recorded on the vectors the kiosk would give that model, and a table of
only the features it reads (its own training table) serves as --vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.inference.runner import RUN_DEADLINE_S, OnnxRunner
from appliance.modelbuild.table import LabelledTable, read_table, write_table
from appliance.shipped import SKIN_SELF_TEST, shipped_path
from appliance.transport.payloads import FEATURE_KEYS
from appliance.updates import fleetops
from appliance.updates.manifest import ManifestError, ModelManifest, model_target
from appliance.updates.operations import init_repository, released
from appliance.updates.release import manifest_for, table_inputs
from appliance.updates.selftest import check_self_test
from appliance.updates.testing import linear_model

READS = ("kime_score", "pore_count", "lab_l", "furrow_density_mm_per_mm2", "shine_ratio")


def test_a_model_reading_five_features_in_its_own_order_is_self_tested_on_those(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "five.onnx", "2.0.0", bias=(0.0, 1.0, 0.0),
                         feature_names=READS)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "2.0.0"]) == 0
    assert "32 self-test vectors" in capsys.readouterr().out
    manifest = released(repo, "skin-texture-grade", "2.0.0")
    measured = table_inputs(shipped_path(SKIN_SELF_TEST))
    expected = [[row[FEATURE_KEYS.index(name)] for name in READS] for row in measured]
    assert [vector.features for vector in manifest.self_test] == expected  # float32s, exact
    check_self_test(OnnxRunner(model), manifest)  # what a kiosk replays before installing


def test_self_test_inputs_that_are_no_measured_feature_vectors_are_refused(
    tmp_path: Path,
) -> None:
    model = linear_model(tmp_path / "m.onnx", "1.0.0")
    with pytest.raises(ManifestError, match=r"self-test inputs of 5 values; each is a measured "
                                            rf"feature vector of {len(FEATURE_KEYS)} "):
        manifest_for(model, "1.0.0", [[1.0] * 5])


def test_vectors_from_a_table_of_only_the_features_the_model_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Such a table was refused for lacking the eleven features the model never reads."""
    measured = read_table(shipped_path(SKIN_SELF_TEST))
    narrow = [FEATURE_KEYS.index(name) for name in READS]
    table = write_table(tmp_path / "five.csv", LabelledTable(
        READS, measured.features[:, narrow], measured.labels, measured.splits, measured.sources))
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "five.onnx", "2.0.0", feature_names=READS)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "2.0.0", "--vectors", str(table)]) == 0
    assert f"{len(measured)} self-test vectors" in capsys.readouterr().out
    manifest = released(repo, "skin-texture-grade", "2.0.0")
    assert [vector.features for vector in manifest.self_test] == measured.features[
        :, narrow].tolist()
    other = linear_model(tmp_path / "all.onnx", "3.0.0")  # reads all sixteen
    assert main(["models", "release", str(other), "--repo", str(repo.dir), "--version",
                 "3.0.0", "--vectors", str(table)]) == 2
    assert ("models release: "
            f"{table}: missing column(s) pore_density_per_cm2, " in capsys.readouterr().err)


def test_a_model_file_replaced_during_the_release_ships_the_model_it_self_tested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release read the file once for the self-test and again for the hash and the copy:
    a file replaced in between shipped a model its own self-test refuses on every kiosk."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    real_manifest = fleetops.runner_manifest

    def manifest_then_replace(*args: Any, **kwargs: Any) -> ModelManifest:
        manifest = real_manifest(*args, **kwargs)
        linear_model(tmp_path / "other.onnx", "1.1.0", bias=(0.0, 0.0, 2.0)).replace(model)
        return manifest

    monkeypatch.setattr(fleetops, "runner_manifest", manifest_then_replace)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 0
    manifest = released(repo, "skin-texture-grade", "1.1.0")
    target = model_target(manifest.name, manifest.version)
    sha256 = repo.targets().targets[target].hashes["sha256"]
    directory, _, name = target.rpartition("/")
    shipped = repo.targets_dir / directory / f"{sha256}.{name}"
    check_self_test(OnnxRunner(shipped), manifest)  # what a kiosk replays before installing


def test_a_release_loads_the_model_once_and_ships_the_bytes_it_self_tested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release parsed and checked the model with ONNX Runtime twice (once for the features
    it reads, once for the self-test), each from a private copy written to a temporary file."""
    import onnxruntime

    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    sessions: list[object] = []
    real_session = onnxruntime.InferenceSession

    def counted(source: object, *args: Any, **kwargs: Any) -> Any:
        sessions.append(source)
        return real_session(source, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counted)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 0
    assert len(sessions) == 1  # one load, from the bytes read once
    assert sessions[0] == model.read_bytes()
    manifest = released(repo, "skin-texture-grade", "1.1.0")
    info = repo.targets().targets[model_target(manifest.name, manifest.version)]
    assert info.length == model.stat().st_size


def test_a_model_whose_runs_take_seconds_is_refused_before_it_is_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model answering its self-test rows right, each run after some 5 s in a Loop node
    (3.5 million trips), was signed: every kiosk would have held each measurement up by that
    much once it installed it. Its runs are bounded as the kiosk bounds them."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "slow.onnx", "1.1.0", loop_trips=3_500_000)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 2
    err = capsys.readouterr().err
    assert f"a run of 1 row(s) did not end within {RUN_DEADLINE_S:g} s" in err
    assert model_target("skin-texture-grade", "1.1.0") not in repo.targets().targets


def test_a_model_answering_one_row_for_many_is_refused_naming_its_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its one-row warm-up passed; the self-test's record then failed in a ``zip`` and the
    release said only "zip() argument 2 is shorter than argument 1"."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "one.onnx", "1.1.0", one_answer=True)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 2
    assert ("the model answers shape [1, 3] for 32 self-test rows; a release answers [32, 3]"
            in capsys.readouterr().err)
