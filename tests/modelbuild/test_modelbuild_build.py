"""Building a model from a labelled table, and the evaluate / show reports on it."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from inference_helpers import make_table

from appliance.cli import main
from appliance.inference.runner import OnnxRunner
from appliance.modelbuild.build import BuildSettings, BuiltModel, build_model
from appliance.modelbuild.evaluate import evaluate
from appliance.modelbuild.reliability import brier_score, expected_calibration_error
from appliance.modelbuild.table import TableError, read_table, write_table
from appliance.modelbuild.training import label_indices
from appliance.transport.payloads import FEATURE_KEYS
from appliance.updates.testing import linear_model


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_table(tmp_path_factory.mktemp("table") / "grades.parquet", make_table(rows=500))


@pytest.fixture(scope="module")
def built(table_path: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    settings = BuildSettings(
        table=table_path, out_dir=tmp_path_factory.mktemp("out"), trained_on="unit-test table",
        hidden=(64, 64), epochs=40,
    )
    return build_model(settings)


def test_build_writes_int8_and_float_models_with_the_contract(built: BuiltModel) -> None:
    int8, full = OnnxRunner(built.int8_path), OnnxRunner(built.float_path)
    assert int8.contract.labels == ("fine", "normal", "coarse")
    assert int8.contract.extra == {"precision": "int8", "float_model": built.float_path.name}
    assert full.contract.extra == {"precision": "float32"}
    assert "unit-test table" in int8.contract.trained_on
    assert "sha256:" in int8.contract.trained_on
    assert int8.contract.figures == full.contract.figures == built.figures


def test_int8_file_is_much_smaller_than_float(built: BuiltModel) -> None:
    assert built.int8_path.stat().st_size * 2 <= built.float_path.stat().st_size


def test_figures_state_calibration_and_validation(built: BuiltModel) -> None:
    calibration, validation = built.figures["calibration"], built.figures["validation"]
    assert calibration["rows"] == 50
    assert len(calibration["candidates"]) == 12
    assert calibration["chosen"] in calibration["candidates"]
    assert validation["rows"] == 50
    assert validation["accuracy_float"] > 0.6  # the grade is learnable from two features
    assert validation["agreement_int8_float"] >= 0.95


def test_int8_agrees_with_float_on_held_out_rows(built: BuiltModel, table_path: Path) -> None:
    report = evaluate(built.int8_path, table_path, "test")
    assert report.rows == 100
    assert report.agreement_with_float is not None
    assert report.agreement_with_float >= 0.97
    assert report.float_accuracy is not None
    assert abs(report.accuracy - report.float_accuracy) <= 0.03


def test_evaluate_report_figures_are_consistent(built: BuiltModel, table_path: Path) -> None:
    report = evaluate(built.int8_path, table_path, "test")
    confusion = np.asarray(report.confusion)
    assert confusion.sum() == report.rows
    assert np.trace(confusion) / report.rows == pytest.approx(report.accuracy)
    for i, label in enumerate(report.labels):
        assert report.per_class[label].support == confusion[i].sum()
        assert report.per_class[label].recall == pytest.approx(confusion[i, i] / confusion[i].sum())


def test_evaluate_command_prints_the_report(
    built: BuiltModel, table_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "evaluate", str(built.int8_path), "--data", str(table_path)]) == 0
    out = capsys.readouterr().out
    for text in ("accuracy", "precision", "recall", "confusion", "INT8/float label agreement"):
        assert text in out
    args = ["models", "evaluate", str(built.int8_path), "--data", str(table_path), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 100
    assert set(report["per_class"]) == {"fine", "normal", "coarse"}


@pytest.mark.parametrize("feature_names", [FEATURE_KEYS[:5], FEATURE_KEYS[::-1]])
def test_evaluate_refuses_a_float_model_reading_other_features(
    built: BuiltModel, table_path: Path, tmp_path: Path, feature_names: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Five features ended in an ONNX Runtime traceback; the same sixteen in another order
    gave an accuracy and an INT8/float agreement computed on shuffled inputs."""
    other = linear_model(tmp_path / "other.onnx", "1.0.0", feature_names=feature_names)
    assert main(["models", "evaluate", str(built.int8_path), "--data", str(table_path),
                 "--float", str(other)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"models evaluate: {other}: the float model's features are "
                                   f"{list(feature_names)}, {built.int8_path}'s are ")
    assert captured.err.endswith(" (in that order); compare the two models of one build\n")
    assert captured.out == ""


def test_evaluate_of_a_split_the_table_lacks_is_refused_not_scored_on_every_row(
    built: BuiltModel, table_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table without test rows was scored on every row it has, its training rows too (a
    flattering accuracy, "(split all)" in the report's first line the only sign)."""
    table = read_table(table_path)
    no_test = write_table(tmp_path / "no-test.parquet", table.rows("calibration"))
    assert main(["models", "evaluate", str(built.int8_path), "--data", str(no_test)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"models evaluate: {no_test}: no test rows (its splits: calibration); "
                            "name one with --split, or --split all for every row\n")
    assert captured.out == ""
    with pytest.raises(SystemExit) as refused:
        main(["models", "evaluate", str(built.int8_path), "--data", str(table_path),
              "--split", "validaton"])
    assert refused.value.code == 2
    assert "argument --split: invalid choice: 'validaton'" in capsys.readouterr().err


def test_show_prints_the_contract_and_refuses_a_bad_file(
    built: BuiltModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "show", str(built.int8_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "1.0.0"
    assert shown["validation"]["rows"] == 50
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["models", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err
    # the file was named on the command line: no config is involved
    assert "check the file named" in err
    assert "model.path" not in err


@pytest.mark.parametrize("key", ["feature_names", "validation"])
def test_show_refuses_metadata_nested_too_deeply_naming_the_file(
    key: str, built: BuiltModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = onnx.load(str(built.int8_path))
    for entry in proto.metadata_props:
        if entry.key == key:
            entry.value = "[" * 2000  # past the JSON decoder's recursion limit
    nested = tmp_path / "nested.onnx"
    onnx.save(proto, str(nested))
    assert main(["models", "show", str(nested)]) == 2
    err = capsys.readouterr().err
    assert f"{nested}: metadata {key!r} is not JSON (JSON nested too deeply" in err
    assert "Traceback" not in err


def test_build_command_trains_from_a_csv_table(tmp_path: Path) -> None:
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=2))
    args = ["models", "build-skin", "--data", str(table), "--out", str(tmp_path / "m"),
            "--hidden", "16", "--epochs", "5", "--version", "0.9.0"]
    assert main(args) == 0
    assert OnnxRunner(tmp_path / "m" / "skin-texture-grade.int8.onnx").contract.version == "0.9.0"


def test_a_killed_build_s_folder_is_removed_by_the_next_and_a_running_one_s_is_kept(
    tmp_path: Path,
) -> None:
    """A killed build-skin left its hidden .build-* folder (a half-written model) in --out
    for ever."""
    out = tmp_path / "m"
    killed, running = out / ".build-killed1", out / ".build-running"
    for folder in (killed, running):
        folder.mkdir(parents=True)
        (folder / "skin-texture-grade.onnx").write_bytes(b"half a model")
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=2))
    fd = os.open(running, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a build at work holds its folder
        assert main(["models", "build-skin", "--data", str(table), "--out", str(out),
                     "--hidden", "16", "--epochs", "5", "--version", "0.9.0"]) == 0
    finally:
        os.close(fd)
    assert sorted(path.name for path in out.glob(".build-*")) == [running.name]
    assert (out / "skin-texture-grade.int8.onnx").is_file()


def test_a_build_starting_as_another_makes_its_folder_leaves_that_folder_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build looks for killed builds' folders (no lock held on them) as it starts; a folder
    another build had just made, and not yet locked, looked killed and was removed under it."""
    from appliance.modelbuild import build

    out = tmp_path / "m"
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=2))
    real_mkdtemp = build.tempfile.mkdtemp

    def made_then_another_build_starts(*args: Any, **kwargs: Any) -> str:
        folder = real_mkdtemp(*args, **kwargs)
        build._remove_killed_builds(out)  # noqa: SLF001 - what a build starting now does first
        return folder

    monkeypatch.setattr(build.tempfile, "mkdtemp", made_then_another_build_starts)
    assert main(["models", "build-skin", "--data", str(table), "--out", str(out),
                 "--hidden", "16", "--epochs", "5", "--version", "0.9.0"]) == 0
    assert (out / "skin-texture-grade.int8.onnx").is_file()
    assert list(out.glob(".build-*")) == []


def test_two_builds_into_one_folder_leave_one_build_s_pair_of_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each build renamed its float and then its INT8 model into place: another build placing
    its pair in between left its float model beside this build's INT8 one, which names its
    float twin by file name and was validated against it."""
    import threading

    from appliance.modelbuild import build

    out = tmp_path / "m"
    other = tmp_path / "other"
    other.mkdir()
    theirs = (other / "skin-texture-grade.float.onnx", other / "skin-texture-grade.int8.onnx")
    for path in theirs:
        path.write_bytes(f"the other build's {path.name}".encode())
    placing = threading.Thread(target=build._put_pair_in_place,  # noqa: SLF001
                               args=(theirs, out), name="other build")
    real_replace = os.replace

    def replace_then_the_other_build_places(source: Any, target: Any) -> None:
        real_replace(source, target)
        if threading.current_thread() is not placing and not placing.is_alive() and \
                str(target).endswith(".float.onnx"):
            placing.start()  # the other build places its pair now, between our two renames
            placing.join(5)  # it waits for our lock (or, without one, is done by now)

    monkeypatch.setattr(build.os, "replace", replace_then_the_other_build_places)
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=2))
    assert main(["models", "build-skin", "--data", str(table), "--out", str(out),
                 "--hidden", "16", "--epochs", "5"]) == 0
    placing.join(30)
    float_model = (out / "skin-texture-grade.float.onnx").read_bytes()
    int8_model = (out / "skin-texture-grade.int8.onnx").read_bytes()
    assert (float_model == b"the other build's skin-texture-grade.float.onnx") == (
        int8_model == b"the other build's skin-texture-grade.int8.onnx")


def test_real_style_table_without_splits_and_with_fewer_features(tmp_path: Path) -> None:
    inputs = ("hill_density_per_mm2", "furrow_mean_width_um", "kime_score")
    lines = write_table(tmp_path / "full.csv", make_table(rows=200, seed=3)).read_text()
    header = lines.splitlines()[0].split(",")
    keep = [header.index(name) for name in (*inputs, "label")]
    rows = [",".join(line.split(",")[i] for i in keep) for line in lines.splitlines()]
    (tmp_path / "expert.csv").write_text("\n".join(rows) + "\n")
    args = ["models", "build-skin", "--data", str(tmp_path / "expert.csv"), "--out",
            str(tmp_path / "m"), "--hidden", "16", "--epochs", "5", "--features", ",".join(inputs),
            "--trained-on", "200 measurements graded by one dermatologist"]
    assert main(args) == 0
    contract = OnnxRunner(tmp_path / "m" / "skin-texture-grade.int8.onnx").contract
    assert contract.feature_names == inputs
    assert contract.trained_on.startswith("200 measurements graded by one dermatologist")
    assert "splits assigned at random" in contract.trained_on


def test_build_command_rejects_an_unknown_feature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["models", "build-skin", "--features", "hill_density,kime_score"])
    assert "unknown feature" in capsys.readouterr().err


def test_build_command_rejects_a_feature_named_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It built a model that models show, analyze and the kiosk then refused ("metadata
    'feature_names' names an entry twice")."""
    with pytest.raises(SystemExit) as refused:
        main(["models", "build-skin", "--data", str(tmp_path / "t.csv"), "--out",
              str(tmp_path / "m"), "--features", "kime_score,lab_l,kime_score"])
    assert refused.value.code == 2
    assert "argument --features: kime_score named twice; name each once" in (
        capsys.readouterr().err)
    assert not (tmp_path / "m").exists()


def test_table_errors_name_the_column_and_row(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", make_table(rows=30))
    text = path.read_text().splitlines()
    header = text[0].split(",")
    broken = text[3].split(",")
    broken[header.index("lab_l")] = "bright"
    path.write_text("\n".join([text[0], text[1], text[2], ",".join(broken)]) + "\n")
    with pytest.raises(TableError, match=r"row 4, column 'lab_l': 'bright'"):
        read_table(path)
    path.write_text(text[0].replace("kime_score", "kime") + "\n" + text[1] + "\n")
    with pytest.raises(TableError, match=r"missing column.*kime_score"):
        read_table(path)


@pytest.mark.parametrize(("layers", "float_choices"), [(1, {"none"}), (2, {"none", "first"}),
                                                       (3, {"none", "first", "first+last"})])
def test_every_quantization_candidate_keeps_some_layer_int8(
    layers: int, float_choices: set[str]
) -> None:
    from appliance.modelbuild.quantize import candidate_schemes

    schemes = candidate_schemes(layers)
    assert {s.float_layers for s in schemes} == float_choices
    assert all(len(s.excluded_nodes()) < layers for s in schemes)
    assert {(s.quant_format, s.per_channel) for s in schemes} == {
        ("QDQ", False), ("QDQ", True), ("QOperator", False), ("QOperator", True)
    }


def test_build_command_into_a_file_says_so_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It trained, then said "--out X: could not write the models (File exists)"."""
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=2))
    taken = tmp_path / "notes.txt"
    taken.write_text("the user's\n")
    assert main(["models", "build-skin", "--data", str(table), "--out", str(taken),
                 "--hidden", "16", "--epochs", "5"]) == 2
    assert (f"models build-skin: --out {taken}: a file, not a folder; name a folder for the two "
            "models") in capsys.readouterr().err
    assert taken.read_text() == "the user's\n"


def test_build_command_into_a_link_loop_or_a_pipe_says_so_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link loop ended it in a RuntimeError traceback (Path.resolve); a named pipe was
    called "a file"."""
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=2))
    loop, pipe = tmp_path / "models", tmp_path / "pipe"
    loop.symlink_to("models")
    os.mkfifo(pipe)
    for out, kind in ((loop, "a symbolic link loop (the link leads back to itself)"),
                      (pipe, "a named pipe (FIFO)")):
        assert main(["models", "build-skin", "--data", str(table), "--out", str(out),
                     "--hidden", "16", "--epochs", "5"]) == 2
        assert capsys.readouterr().err == (f"models build-skin: --out {out}: {kind}, not a folder; "
                                           "name a folder for the two models\n")


def test_the_quantization_log_is_a_summary_line_and_a_line_a_scheme_with_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It was one INFO line of every scheme's dict, about 2,500 characters on the shipped table.
    Two layers: 8 schemes (QDQ or QOperator, per-tensor or per-channel, none or the first float)."""
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=3))
    args = ["models", "build-skin", "--data", str(table), "--out", str(tmp_path / "m"),
            "--hidden", "8", "--epochs", "2"]
    with caplog.at_level(logging.DEBUG, logger="appliance.modelbuild.quantize"):
        assert main(args) == 0
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "appliance.modelbuild.quantize"]
    assert all(len(message) < 300 for _, message in lines)
    summaries = [message for level, message in lines if level == logging.INFO]
    assert len(summaries) == 1
    assert "8 schemes measured on 20 validation rows" in summaries[0]
    assert "; chose Q" in summaries[0]
    assert len([message for level, message in lines if level == logging.DEBUG]) == 8


def test_evaluate_reports_how_far_the_probabilities_can_be_taken_at_their_word(
    built: BuiltModel, table_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = read_table(table_path).rows("test")
    probabilities = OnnxRunner(built.int8_path).probabilities(rows.features)
    truth = label_indices(rows.labels, ("fine", "normal", "coarse"))
    report = evaluate(built.int8_path, table_path, "test")
    assert report.confidence is not None
    assert report.confidence["ece"] == round(expected_calibration_error(probabilities, truth), 4)
    assert report.confidence["brier"] == round(brier_score(probabilities, truth), 4)
    assert 0.0 < report.confidence["ece_by_chance"] < 0.2
    assert main(["models", "evaluate", str(built.int8_path), "--data", str(table_path)]) == 0
    assert f"ECE {report.confidence['ece']:.4f} (10 bins, top label" in capsys.readouterr().out
