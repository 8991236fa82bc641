"""``appliance synth skin``: files written, determinism across runs, exit codes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main


@pytest.mark.slow  # starts two worker processes (spawn): a few seconds on a loaded machine
def test_pool_and_serial_runs_write_identical_files(tmp_path: Path) -> None:
    outputs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        args = [
            "--out",
            str(out),
            "--count",
            "2",
            "--seed",
            "3",
            "--preset",
            "fine",
            "--workers",
            jobs,
        ]
        assert main(["synth", "skin", *args]) == 0
        outputs.append(out)
    names = sorted(p.name for p in outputs[0].iterdir())
    assert names == [
        "skin-3-00000.jpg",
        "skin-3-00000.json",
        "skin-3-00001.jpg",
        "skin-3-00001.json",
    ]
    for name in names:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes()
    sidecar = json.loads((outputs[0] / "skin-3-00001.json").read_text())
    assert sidecar["preset"] == "fine"
    assert sidecar["index"] == 1


def test_frames_of_the_series_already_there_are_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`synth skin --out DIR` wrote over DIR's frames without a word (`results export` refuses
    and names --force): `--seed 1 --preset coarse` after `--seed 1 --preset fine` left fine
    frames' names on coarse skin, and hand-edited sidecars were lost. Frames of this series
    already there are refused before any is drawn; other series and indices go beside them (a
    stopped series is finished with --start), and --force replaces them."""
    first = ["synth", "skin", "--out", str(tmp_path), "--count", "1", "--seed", "1",
             "--workers", "1"]
    assert main([*first, "--preset", "fine"]) == 0
    sidecar = tmp_path / "skin-1-00000.json"
    fine = sidecar.read_text()
    capsys.readouterr()
    assert main([*first, "--preset", "coarse", "--count", "2"]) == 2
    assert capsys.readouterr() == ("", (
        f"synth skin: {tmp_path / 'skin-1-00000.jpg'} and 1 more of the files "
        "it would write exist; pass --force to replace them; frames of another --seed or "
        "--start go beside the ones there\n"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skin-1-00000.jpg", "skin-1-00000.json"]
    assert sidecar.read_text() == fine
    assert main([*first, "--start", "1"]) == 0
    assert (tmp_path / "skin-1-00001.jpg").is_file()
    assert main([*first, "--preset", "coarse", "--force"]) == 0
    assert json.loads(sidecar.read_text())["preset"] == "coarse"


def test_frames_there_are_found_in_a_folder_that_cannot_be_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that may be written and searched but not read (mode -wx; root reads any, so
    the listing's refusal is stood in for): the frames are looked up one by one."""
    (tmp_path / "skin-2-00000.json").write_text("kept")
    listdir = os.listdir

    def unreadable_out(path: Any = ".") -> list[str]:
        if Path(path) == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", unreadable_out)
    assert main(["synth", "skin", "--out", str(tmp_path), "--count", "1", "--seed", "2"]) == 2
    assert f"{tmp_path / 'skin-2-00000.json'} exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "skin-2-00000.json").read_text() == "kept"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "teen"], "invalid choice: 'teen'"),
        (["--count", "0"], "--count: must be a whole number from 1 to 100000, got '0'"),
        (["--count", "100001"], "--count: must be a whole number from 1 to 100000, got"),
        (["--count", "x"], "--count: expected a whole number"),
        (["--seed", "-1"], "--seed: must be a whole number from 0 to 9223372036854775807, got"),
        (["--seed", "9" * 30], "--seed: must be a whole number from 0 to 9223372036854775807"),
        (["--start=-1"], "--start: must be a whole number from 0 to 9223372036854775807, got"),
        (["--workers", "0"], "--workers: must be a whole number from 1 to 256, got '0'"),
        (["--workers", "100000"], "--workers: must be a whole number from 1 to 256, got"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["synth", "skin", "--out", str(tmp_path), "--count", "1", *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unwritable_out_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["synth", "skin", "--out", str(blocker / "frames"), "--count", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to --out" in err
    assert "a-file" in err
    assert "writable directory" in err


@pytest.mark.parametrize(("make", "called"), [
    (os.mkfifo, "a named pipe (FIFO)"),  # was "a file"
    (lambda out: out.symlink_to(out.name), "a symbolic link loop (the link leads back to "
     "itself)"),  # was "File exists; choose a writable directory"
    (lambda out: out.symlink_to("gone"), "a broken link"),  # was "File exists; ..."
])
def test_an_out_that_is_no_folder_is_called_what_it_is(
    make: Callable[[Path], None], called: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "frames"
    make(out)
    assert main(["synth", "skin", "--out", str(out), "--count", "1"]) == 2
    assert capsys.readouterr().err == (
        f"synth skin: cannot write to --out {str(out)!r}: {called}, not a "
        "folder; name a folder for the output (created if missing)\n")


def test_an_out_that_is_a_file_is_called_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "cannot write to --out 'results.csv': File exists; choose a writable directory"."""
    taken = tmp_path / "results.csv"
    taken.write_text("kept\n")
    assert main(["synth", "skin", "--out", str(taken), "--count", "1"]) == 2
    assert capsys.readouterr().err == (
        f"synth skin: cannot write to --out {str(taken)!r}: a file, not a "
        "folder; name a folder for the output (created if missing)\n")
    assert taken.read_text() == "kept\n"
