"""`models build-skin` and `models skin-table` never overwrite shipped or existing files; a build
warns when its calibration or validation split is small and raises no pre-processing warnings."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from inference_helpers import make_table

from appliance.cli import main
from appliance.modelbuild import grades
from appliance.modelbuild.table import write_table
from appliance.shipped import SKIN_MODEL, shipped_path
from tests.disk_helpers import fill, small_tmpfs
from tests.pool_helpers import kill_a_worker


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_skin_needs_data_and_out(capsys: pytest.CaptureFixture[str]) -> None:
    before = _digest(shipped_path(SKIN_MODEL))
    with pytest.raises(SystemExit):
        main(["models", "build-skin"])
    assert "--data" in capsys.readouterr().err
    assert _digest(shipped_path(SKIN_MODEL)) == before


def test_build_skin_refuses_the_shipped_folder_and_existing_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=4))
    shipped = shipped_path(SKIN_MODEL)
    before = _digest(shipped)
    args = ["models", "build-skin", "--data", str(table), "--hidden", "8", "--epochs", "2"]
    assert main([*args, "--out", str(shipped.parent), "--force"]) == 2
    assert "shipped models" in capsys.readouterr().err
    assert _digest(shipped) == before
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / SKIN_MODEL).write_bytes(b"an earlier build")
    assert main([*args, "--out", str(tmp_path / "m")]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "m" / SKIN_MODEL).read_bytes() == b"an earlier build"


def test_build_skin_on_a_full_disk_keeps_the_models_there_whole_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It ended in an OSError traceback from onnx.save_model, an INT8 file cut at 4 KiB left
    under its name beside the new float model."""
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=4))
    names = ("skin-texture-grade.float.onnx", "skin-texture-grade.int8.onnx")
    with small_tmpfs(tmp_path / "disk", size="64k") as disk:
        out = disk / "m"
        out.mkdir()
        for name in names:
            (out / name).write_bytes(b"an earlier build")
        fill(disk)
        code = main(["models", "build-skin", "--data", str(table), "--out", str(out),
                     "--hidden", "8", "--epochs", "2", "--force"])
        left = {path.name: path.read_bytes() for path in out.iterdir()}
    assert code == 1
    assert capsys.readouterr().err.endswith(
        "models build-skin: "
        f"--out {out}: could not write the models (No space left on device); the "
        "files there are as they were\n")
    assert left == dict.fromkeys(names, b"an earlier build")  # no staging folder left either


def test_small_splits_warn_and_quantization_asks_for_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = write_table(tmp_path / "grades.csv", make_table(rows=200, seed=5))
    args = ["models", "build-skin", "--data", str(table), "--out", str(tmp_path / "m"),
            "--hidden", "8", "--epochs", "2"]
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("only 20 calibration rows" in w for w in warnings)
    assert any("only 20 validation rows" in w for w in warnings)
    assert not [w for w in warnings if "pre-processing" in w]


def test_skin_table_needs_out_and_keeps_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["models", "skin-table", "--rows", "6"])
    assert "--out" in capsys.readouterr().err
    existing = tmp_path / "table.csv"
    existing.write_text("keep me\n")
    assert main(["models", "skin-table", "--rows", "6", "--out", str(existing), "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"


def test_skin_table_refuses_a_folder_before_drawing_any_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--force on a folder drew every frame, then ended in an IsADirectoryError traceback."""
    folder = tmp_path / "tables"
    folder.mkdir()
    assert main(["models", "skin-table", "--rows", "6", "--features", "truth", "--out",
                 str(folder), "--force", "--quiet"]) == 2
    assert capsys.readouterr().err == ("models skin-table: "
                                       f"--out {folder}: a folder; name the table "
                                       f"file to write (e.g. {folder / 'grades.parquet'})\n")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_skin_table_refuses_a_pipe_before_drawing_any_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    force: list[str],
) -> None:
    """--force on a pipe (or /dev/null) drew every frame, hours for a real table, to be refused
    at the write; without --force it said "exists; pass --force", which would not have helped."""
    pipe = tmp_path / "grades.csv"
    os.mkfifo(pipe)
    drawn: list[int] = []

    def drawing(spec: grades.TableSpec, index: int) -> grades.FrameRow:
        drawn.append(index)
        return frame_row(spec, index)

    frame_row = grades.frame_row
    monkeypatch.setattr(grades, "frame_row", drawing)
    assert main(["models", "skin-table", "--rows", "6", "--features", "truth", "--workers", "1",
                 "--out", str(pipe), "--quiet", *force]) == 2
    assert capsys.readouterr().err == (
        "models skin-table: "
        f"--out {pipe}: not a regular file (a device, a pipe or a socket), which the "
        "table would replace; name a file to write\n")
    assert drawn == []
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_skin_table_on_a_full_disk_keeps_the_old_table_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It ended in an OSError traceback, the old table (--force) cut to what fitted."""
    with small_tmpfs(tmp_path / "disk", size="64k") as disk:
        old = disk / "grades.csv"
        old.write_text("the old table\n")
        fill(disk)
        code = main(["models", "skin-table", "--rows", "6", "--features", "truth", "--out",
                     str(old), "--force", "--quiet"])
        err = capsys.readouterr().err
        kept = old.read_text()
        left = sorted(path.name for path in disk.iterdir())
    assert code == 1
    assert err == (f"models skin-table: {old}: could not write it (No space left on device); "
                   "left as it was\n")
    assert kept == "the old table\n"
    assert left == ["filler", "grades.csv"]  # no temporary left behind


@pytest.mark.parametrize("rows", ["1", "5"])
def test_skin_table_with_too_few_rows_for_three_grades_is_refused_at_the_command_line(
    tmp_path: Path, rows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rows 1 to 5 were taken, then refused after the start with an object's dump
    ("got TableSpec(...)"): three grades need two rows each."""
    with pytest.raises(SystemExit) as refused:
        main(["models", "skin-table", "--out", str(tmp_path / "t.parquet"), "--rows", rows])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --rows: must be a whole number from 6 to 1000000, got '{rows}'" in err
    assert "TableSpec" not in err
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--epochs", "0", "must be a whole number from 1 to 10000, got '0'"),
    ("--epochs", "-3", "must be a whole number from 1 to 10000, got '-3'"),
    ("--seed", "-1", "must be a whole number from 0 to 9223372036854775807, got '-1'"),
    ("--seed", str(2**64), f"must be a whole number from 0 to 9223372036854775807, got "
                           f"'{2**64}'"),
])
def test_build_skin_refuses_an_epoch_count_or_seed_it_cannot_train_with(
    tmp_path: Path, option: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--epochs 0 or -3 wrote an untrained model (random weights) and exited 0; --seed -1 was
    taken, a seed past 64 bits ended in 'Overflow when unpacking long long'."""
    with pytest.raises(SystemExit) as refused:
        main(["models", "build-skin", "--data", str(tmp_path / "t.csv"), "--out",
              str(tmp_path / "m"), option, value])
    assert refused.value.code == 2
    assert f"argument {option}: {said}" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("version", ["foo bar", "1" * 80, "1.0", "v1.0.0"])
def test_build_skin_refuses_a_version_no_release_or_result_can_carry(
    tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Such a model was built; `models release` then refused it, and a kiosk grading with one
    of over 64 characters sent every result unclassified (the payload refused the version)."""
    with pytest.raises(SystemExit) as refused:
        main(["models", "build-skin", "--data", str(tmp_path / "t.csv"), "--out",
              str(tmp_path / "m"), "--version", version])
    assert refused.value.code == 2
    assert (f"argument --version: version {version!r} is not a semantic version like 1.2.3 "
            "(or 1.2.3-rc.1)") in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow  # a real worker killed with SIGKILL
def test_skin_table_with_a_worker_killed_says_so_instead_of_waiting_forever(
    tmp_path: Path,
) -> None:
    """multiprocessing.Pool lost the killed worker's rows and waited for them for ever."""
    out = tmp_path / "grades.csv"
    code, err, killed = kill_a_worker(["models", "skin-table", "--out", str(out), "--rows",
                                       "400", "--workers", "2", "--quiet"])
    assert code == 1, err
    said = re.fullmatch("models skin-table: "
                        rf"worker process {killed} was killed by SIGKILL \(kill -9, "
                        r"or out of memory\) after (\d+) of 400 frames were drawn, before the "
                        r"table was written: nothing kept; the same command again draws them "
                        r"all\n", err)
    assert said is not None, err
    assert not out.exists()


def test_skin_table_stopped_by_ctrl_c_says_nothing_is_kept_and_the_earlier_table_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """It exited 130 without a word after minutes of frames: was a part of the table written,
    and was the earlier one replaced? Then it said so, but not how far it had got."""
    from appliance.modelbuild import grades

    def ctrl_c_at_the_fourth(spec: object, index: int) -> tuple[dict[str, float], ...]:
        if index == 3:
            raise KeyboardInterrupt
        return {}, {}

    monkeypatch.setattr(grades, "frame_row", ctrl_c_at_the_fourth)
    out = tmp_path / "t.csv"
    out.write_text("the earlier table\n")
    assert main(["models", "skin-table", "--rows", "6", "--out", str(out), "--force"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "models skin-table: "
        f"stopped after drawing 3 of 6 frames, before the table was written: nothing "
        f"kept; the earlier {out} is as it was; the same command again draws them all")
    assert out.read_text() == "the earlier table\n"


def _build_script(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[tuple[str, Path]]]:
    """models/skin/build_skin_model.py, loaded with its table, comparison and build recorded
    (each as what it was asked and the path it was given) instead of run."""
    path = Path(__file__).resolve().parents[2] / "models" / "skin" / "build_skin_model.py"
    spec = importlib.util.spec_from_file_location("build_skin_model_under_test", path)
    assert spec
    assert spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls: list[tuple[str, Path]] = []

    def build(settings: Any) -> Any:
        calls.append(("build", settings.out_dir))
        raise SystemExit(0)  # what a build would write is not the point here

    monkeypatch.setattr(script, "build_skin_table", lambda *args, **kwargs: "rows")
    monkeypatch.setattr(script, "write_table",
                        lambda path, rows: calls.append(("table", path)) or path)
    monkeypatch.setattr(script, "read_table", lambda path: SimpleNamespace(description="t"))
    monkeypatch.setattr(script, "compare_architectures", lambda *args, **kwargs: {})
    monkeypatch.setattr(script, "build_model", build)
    return script, calls


def test_the_rebuild_script_writes_nothing_unless_told_where(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """`python models/skin/build_skin_model.py` with no argument built into
    appliance/shipped/, replacing the tracked model (version 1.1.0 kept, a new created_at) as
    its default; a newcomer trying it changed the shipped model."""
    script, calls = _build_script(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["build_skin_model.py"])
    with pytest.raises(SystemExit) as stopped:
        script.main()
    assert stopped.value.code == 2
    assert "--out DIR" in capsys.readouterr().err
    assert calls == []
    for out in (script.SHIPPED, script.TABLE.parent):  # --out at the tracked files
        monkeypatch.setattr(sys, "argv", ["build_skin_model.py", "--out", str(out)])
        with pytest.raises(SystemExit) as stopped:
            script.main()
        assert stopped.value.code == 2
        assert "--replace-shipped" in capsys.readouterr().err
    assert calls == []
    trial = tmp_path / "trial"
    monkeypatch.setattr(sys, "argv", ["build_skin_model.py", "--out", str(trial), "--new-table"])
    with pytest.raises(SystemExit):
        script.main()
    assert calls == [("table", trial / "skin-grades.parquet"), ("build", trial)]
    calls.clear()
    monkeypatch.setattr(sys, "argv", ["build_skin_model.py", "--replace-shipped"])
    with pytest.raises(SystemExit):
        script.main()
    assert calls == [("build", script.SHIPPED)]
