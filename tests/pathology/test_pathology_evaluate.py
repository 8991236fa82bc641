"""`appliance pathology evaluate`: Table 2 layout, split filter, repeated runs, per material."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from tile_model_helpers import asking_while_loading

from appliance.cli import main
from tests.shared_data import REPO

LABELS = [  # slide, patient, label, material
    ("s1", "p1", "MSI", "biopsy"), ("s2", "p2", "MSI", "surgical"), ("s3", "p3", "MSI", "biopsy"),
    ("s4", "p4", "MSS", "surgical"), ("s5", "p5", "MSS", "biopsy"), ("s6", "p6", "MSS", "surgical"),
    ("s7", "p7", "MSS", "biopsy"), ("s8", "p8", "MSI", "surgical"),
]


def _write(folder: Path, scores: dict[str, float], threshold: float = 0.5) -> Path:
    folder.mkdir(parents=True)
    with (folder / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "patient", "material", "path", "tile_count",
                         "mean_probability", "msi_tile_share", "score", "label", "error"])
        for slide, score in scores.items():
            writer.writerow([slide, "", "", "", 10, score, score, score, "", ""])
        writer.writerow(["s9", "", "", "", 0, "", "", "", "", "corrupt"])
    (folder / "run.json").write_text(json.dumps({"threshold": threshold}))
    return folder


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "patient", "label", "material"])
        writer.writerows(LABELS)
    return path


def test_table_shows_metrics_beside_the_paper(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # s1-s3, s8 MSI; s4-s7 MSS. At 0.5: TP s1 s2 s8, FN s3, FP s4, TN s5 s6 s7.
    scores = {"s1": 0.9, "s2": 0.8, "s3": 0.3, "s4": 0.6, "s5": 0.2, "s6": 0.1,
              "s7": 0.4, "s8": 0.7}
    run = _write(tmp_path / "run1", scores)
    assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                 "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "accuracy    0.750" in text
    assert "0.744" in text
    assert "0.542" in text
    assert "TP 3 FN 1; true MSS -> FP 1 TN 3" in text
    assert "biopsy: 4 slides" in text
    assert "surgical: 4 slides" in text


def test_json_with_split_and_two_runs(labels: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    splits = tmp_path / "splits.csv"
    splits.write_text("patient,split\n" + "".join(
        f"p{i},{'test' if i <= 4 or i == 8 else 'train'}\n" for i in range(1, 9)))
    first = _write(tmp_path / "a", {"s1": 0.9, "s2": 0.8, "s3": 0.3, "s4": 0.6, "s8": 0.7})
    second = _write(tmp_path / "b", {"s1": 0.9, "s2": 0.8, "s3": 0.6, "s4": 0.2, "s8": 0.7})
    code = main(["pathology", "evaluate", "--labels", str(labels), "--results", str(first),
                 str(second), "--splits", str(splits), "--json", "--bootstrap", "50"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    overall = report["groups"]["all"]
    assert [run["slides"] for run in overall["per_run"]] == [5, 5]
    # Run a: 3 of 5 right (s3 missed, s4 false alarm) -> 0.6; run b: all right -> 1.0.
    mean, sd = overall["summary"]["accuracy"]
    assert mean == pytest.approx(0.8)
    assert sd == pytest.approx(0.2828, abs=1e-3)


def test_results_folder_without_results_is_an_error(labels: Path, tmp_path: Path) -> None:
    assert main(["pathology", "evaluate", "--labels", str(labels),
                 "--results", str(tmp_path)]) == 2


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_is_valid_and_counts_unsupported_apart(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write(tmp_path / "run", {"s1": 0.9, "s2": 0.8, "s3": 0.3, "s4": 0.6, "s5": 0.2})
    with (run / "results.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["s6", "", "", "", 10, 0.9, 0.9, 0.9, "unsupported", ""])
        csv.writer(handle).writerow(["s7", "", "", "", 0, "", "", "", "", "truncated"])
    code = main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                 "--json", "--bootstrap", "20"])
    assert code == 0
    report = _strict_json(capsys.readouterr().out)  # one run: sd is null, never NaN
    assert isinstance(report, dict)
    assert report["groups"]["all"]["per_run"][0]["slides"] == 5
    assert report["groups"]["all"]["summary"]["accuracy"][1] is None
    assert report["counted_apart"] == [{"run": "run", "unsupported": 1, "failed": 1}]
    main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
          "--bootstrap", "20"])
    assert "1 slide(s) unsupported" in capsys.readouterr().out


def test_a_run_json_nested_too_deeply_is_exit_2_naming_it(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write(tmp_path / "run1", {"s1": 0.9, "s4": 0.2})
    (run / "run.json").write_text("[" * 1000 + "]" * 1000)
    assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run)]) == 2
    assert capsys.readouterr().err.startswith(
        f"pathology evaluate: {run / 'run.json'}: not the JSON `pathology run` writes (JSON "
        "nested too deeply")


def test_a_material_name_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """labels.csv's material heads a table; an escape sequence in it is printed as text."""
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "patient", "label", "material"])
        writer.writerows((slide, patient, label, "bi\x1b[2Jopsy")
                         for slide, patient, label, _ in LABELS)
    run = _write(tmp_path / "r1", {f"s{i}": i / 10 for i in range(1, 9)})
    assert main(["pathology", "evaluate", "--labels", str(path), "--results", str(run)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "bi\\x1b[2Jopsy: 8 slides" in out


def test_fewer_bootstrap_resamples_than_are_used_are_refused(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--bootstrap 5 ran 10 resamples without a word; the option names the range it keeps."""
    run = _write(tmp_path / "r1", {f"s{i}": i / 10 for i in range(1, 9)})
    with pytest.raises(SystemExit) as stopped:
        main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
              "--bootstrap", "5"])
    assert stopped.value.code == 2
    assert ("argument --bootstrap: must be a whole number from 10 to 100000, got '5'"
            in capsys.readouterr().err)


def test_a_split_without_the_splits_file_is_refused_not_ignored(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run = _write(tmp_path / "a", {"s1": 0.9, "s2": 0.8, "s3": 0.3, "s4": 0.6, "s8": 0.7})
    code = main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                 "--split", "validation"])
    assert code == 2  # it evaluated every slide, as if no split had been asked for
    assert "--split names a split of --splits, which is not given" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["", " "])
def test_an_empty_split_is_refused_not_taken_for_test(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str,
) -> None:
    splits = tmp_path / "splits.csv"
    splits.write_text("patient,split\n" + "".join(
        f"p{i},{'test' if i <= 4 else 'train'}\n" for i in range(1, 9)))
    run = _write(tmp_path / "a", {"s1": 0.9, "s2": 0.8, "s3": 0.3, "s4": 0.6, "s8": 0.7})
    with pytest.raises(SystemExit) as refused:  # it evaluated the test split
        main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
              "--splits", str(splits), "--split", split, "--json", "--bootstrap", "50"])
    assert refused.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (f"argument --split: {'blank' if split else 'empty'}; name a split of --splits, "
            "or leave --split out for test") in captured.err


def test_one_results_folder_given_twice_is_refused_not_counted_as_two_runs(
    labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--results r r/` (or r and a link to it) made "3 runs" of one, their sd 0.000: as if
    repeated runs agreed exactly."""
    run = _write(tmp_path / "run", {"s1": 0.9, "s4": 0.6})
    (tmp_path / "link").symlink_to(run)
    for again in (f"{run}/", str(tmp_path / "link")):
        assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                     again, "--bootstrap", "50"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"--results {run} and {Path(again)} are one folder: give each run once" in \
            captured.err


def _synthetic_labels(tmp_path: Path) -> Path:
    """LABELS with the stain_batch column of a synthetic cohort: evaluate then reads the model
    each run names, for the cohort it was trained on."""
    path = tmp_path / "synthetic-labels.csv"
    path.write_text("slide,patient,label,material,stain_batch\n" + "".join(
        f"{slide},{patient},{label},{material},0\n" for slide, patient, label, material in LABELS))
    return path


def _run_naming(tmp_path: Path, model: Path) -> Path:
    run = _write(tmp_path / "run", {"s1": 0.9, "s4": 0.6})
    (run / "run.json").write_text(json.dumps({"threshold": 0.5, "model": str(model)}))
    return run


def test_a_run_naming_a_file_that_is_no_model_is_exit_2_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model was replaced since the run (or the folder came from elsewhere): evaluate
    cannot check the cohort against the model's training slides. It said so in a traceback."""
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a model\n" * 10)
    run = _run_naming(tmp_path, garbage)
    assert main(["pathology", "evaluate", "--labels", str(_synthetic_labels(tmp_path)),
                 "--results", str(run), "--bootstrap", "50"]) == 2
    err = capsys.readouterr().err
    assert f"{garbage}: not a loadable ONNX model" in err
    assert f"{run / 'run.json'} names it" in err
    assert "Traceback" not in err


def test_a_model_claiming_a_cohort_no_generator_makes_is_refused_not_recreated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Metadata naming a training cohort of a billion patients: recreating its slide list to
    compare would run for hours and fill the memory."""
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    onnx.helper.set_model_props(model, {"training": "synthetic H&E cohort seed 7, "
                                                    "1000000000 patients"})
    path = tmp_path / "claims.onnx"
    onnx.save(model, path)
    run = _run_naming(tmp_path, path)
    assert main(["pathology", "evaluate", "--labels", str(_synthetic_labels(tmp_path)),
                 "--results", str(run), "--bootstrap", "50"]) == 2
    assert "names a training cohort of 1000000000 patients, more than `synth he` makes" in \
        capsys.readouterr().err


def test_a_run_naming_a_model_that_folds_into_gigabytes_is_read_without_folding_it(
    tmp_path: Path,
) -> None:
    """evaluate opens the model a run names for its metadata only; ONNX Runtime folded its
    constants as it opened it: this 1 KB file's three 572 MiB constants took the process to
    3.2 GB. The evaluation runs in a process of its own, which says its peak memory as it
    ends."""
    model = asking_while_loading(tmp_path / "folds.onnx", 150_000_000)
    assert model.stat().st_size < 2000
    run = _run_naming(tmp_path, model)
    evaluation = ("import sys\n"  # VmHWM: this process's own peak (ru_maxrss holds the parent's)
                  "from appliance.cli import main\n"
                  "code = main(sys.argv[1:])\n"
                  "print('peak KiB', [line.split()[1] for line in open('/proc/self/status')\n"
                  "                   if line.startswith('VmHWM:')][0])\n"
                  "sys.exit(code)\n")
    done = subprocess.run(
        [sys.executable, "-c", evaluation, "pathology", "evaluate", "--labels",
         str(_synthetic_labels(tmp_path)), "--results", str(run), "--bootstrap", "50"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MSI vs MSS, slide level, 1 run(s): run")
    peak_kib = int(done.stdout.rsplit("peak KiB ", 1)[1])
    assert peak_kib < 1024 * 1024  # on main: 3.2 GB, the constants folded
