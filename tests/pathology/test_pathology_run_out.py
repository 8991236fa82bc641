"""The results folder of `pathology run/submit`: an earlier run is refused without --force and
replaced whole with it; a kill -9 mid-run or mid-publish never leaves a complete-looking mix."""

from __future__ import annotations

import csv
import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from appliance.cli import main
from appliance.pathology.outfolder import ResultsFolder
from appliance.synthetic.he import SlideSpec
from tests.disk_helpers import small_tmpfs
from tests.he_slides import painted


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small synthetic biopsies, a.jpg, b.jpg and c.jpg, at 1 µm/px."""
    folder = tmp_path_factory.mktemp("slides")
    for seed, name in enumerate("abc"):
        spec = SlideSpec(name, f"P{seed}", "MSI", "biopsy", 2, 0.8, seed=5 + seed)
        Image.fromarray(painted(spec)).save(folder / f"{name}.jpg", quality=88)
    return folder


def _submit(out: Path, *slides: Path, force: bool = False) -> list[str]:
    return ["pathology", "submit", *map(str, slides), "--um-per-px", "1", "--out", str(out),
            *(["--force"] if force else [])]


def _slides_in(out: Path) -> dict[str, list[str]]:
    """Which slides each part of a results folder speaks of (hidden entries under "hidden")."""
    with (out / "results.csv").open(newline="") as handle:
        rows = sorted(row["slide"] for row in csv.DictReader(handle))
    parts = {folder: sorted(p.stem for p in (out / folder).iterdir())
             for folder in ("heatmaps", "cams", "tiles") if (out / folder).is_dir()}
    return {"results.csv": rows, **parts,
            "hidden": sorted(p.name for p in out.rglob(".*"))}


def test_an_earlier_run_is_refused_without_force_naming_what_it_holds(
    slides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert main(_submit(out, slides / "a.jpg", slides / "b.jpg")) == 0
    before = _slides_in(out)
    capsys.readouterr()
    for command in (_submit(out, slides / "c.jpg"),
                    ["pathology", "run", str(slides), "--out", str(out), "--um-per-px", "1"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        held = "results.csv, run.json, heatmaps/ (2 files), cams/ (2 files), tiles/ (2 files)"
        assert f"--out {out} holds an earlier run ({held})" in err
        assert "pass --force" in err
    assert _slides_in(out) == before


def test_force_replaces_the_earlier_run_and_leaves_no_picture_of_it(
    slides: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert main(_submit(out, slides / "a.jpg", slides / "b.jpg")) == 0
    assert main(_submit(out, slides / "c.jpg", force=True)) == 0
    assert _slides_in(out) == {"results.csv": ["c"], "heatmaps": ["c"], "cams": ["c"],
                               "tiles": ["c"], "hidden": []}
    assert main([*_submit(out, slides / "a.jpg", force=True), "--no-pictures"]) == 0
    assert _slides_in(out) == {"results.csv": ["a"], "tiles": ["a"], "hidden": []}


def _killed(command: list[str], trap: str) -> int:
    """Run ``appliance`` with ``command`` in a child that SIGKILLs itself where ``trap`` (Python
    run before the command, with os and signal imported) says; the child's exit status."""
    code = ("import os, signal\n" + trap +
            "\nfrom appliance.cli import main\nraise SystemExit(main(" + repr(command) + "))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=False,
                          timeout=120).returncode


KILL_AFTER_ONE_SLIDE = """
from appliance.pathology.run import SlideRunner
scored = SlideRunner.run
def run_then_die(self, job):
    result = scored(self, job)
    os.kill(os.getpid(), signal.SIGKILL)
SlideRunner.run = run_then_die
"""


def test_a_run_killed_mid_run_leaves_the_earlier_run_whole_and_the_next_cleans_up(
    slides: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert main(_submit(out, slides / "a.jpg")) == 0
    before = _slides_in(out)
    command = _submit(out, slides / "b.jpg", slides / "c.jpg", force=True)
    assert _killed(command, KILL_AFTER_ONE_SLIDE) == -9
    assert [p.name for p in out.glob(".pathology-run-*")]  # the killed run's stage is left
    assert {**_slides_in(out), "hidden": []} == before
    assert main(command) == 0
    assert _slides_in(out) == {"results.csv": ["b", "c"], "heatmaps": ["b", "c"],
                               "cams": ["b", "c"], "tiles": ["b", "c"], "hidden": []}


KILL_BEFORE_RESULTS_CSV_MOVES = """
real_replace = os.replace
def replace_or_die(source, target):
    if str(target).endswith("results.csv") and ".pathology-run-" not in str(target):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(source, target)
os.replace = replace_or_die
"""


def test_a_run_killed_while_publishing_leaves_no_results_csv_and_the_next_run_says_so(
    slides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert main(_submit(out, slides / "a.jpg")) == 0
    command = _submit(out, slides / "b.jpg", force=True)
    assert _killed(command, KILL_BEFORE_RESULTS_CSV_MOVES) == -9
    assert not (out / "results.csv").exists()  # new pictures beside no table: not complete
    assert sorted(p.stem for p in (out / "heatmaps").iterdir()) == ["b"]
    capsys.readouterr()
    assert main(_submit(out, slides / "b.jpg")) == 2
    assert "no results.csv: a run that did not finish" in capsys.readouterr().err
    assert main(command) == 0
    assert _slides_in(out)["hidden"] == []


def test_a_second_run_into_a_folder_in_use_is_refused(
    slides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    with ResultsFolder(out, force=False):  # as a run in another process holds it
        assert main(_submit(out, slides / "a.jpg")) == 2
    assert "another pathology run or submit is writing into it now" in capsys.readouterr().err
    assert main(_submit(out, slides / "a.jpg")) == 0


def test_a_read_only_out_is_refused_before_any_slide_is_scored(
    slides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with small_tmpfs(tmp_path / "disk", size="1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert main(_submit(disk / "out", slides / "a.jpg")) == 2
        err = capsys.readouterr().err
        assert f"--out {disk / 'out'}: cannot make or open it (Read-only file system)" in err
        assert "Traceback" not in err


def test_an_out_on_a_file_system_without_locks_says_so_not_that_a_run_holds_it(
    slides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(fcntl, "flock", unsupported)
    out = tmp_path / "out"
    assert main(_submit(out, slides / "a.jpg")) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot lock it (Operation not supported)" in err
    assert "another pathology run" not in err


def _files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("inside", ["heatmaps", "cams", ".pathology-run-old"])
def test_slides_inside_a_folder_a_run_replaces_are_refused_and_kept_also_with_force(
    slides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: str,
) -> None:
    """--force used to delete the slides: publishing empties heatmaps/ and cams/ of their
    PNGs (a submit of out/heatmaps/a.png lost b.png, and a.png became a.png's heatmap), and
    a run starts by removing stage folders."""
    out = tmp_path / "out"
    (out / inside).mkdir(parents=True)
    for name in ("a", "b"):
        Image.open(slides / f"{name}.jpg").save(out / inside / f"{name}.png")
    link = tmp_path / "link"  # the same folder, reached through a link
    link.symlink_to(out / inside)
    before = _files_of(out)
    commands = {f"the slide {out / inside / 'a.png'}": _submit(out, out / inside / "a.png"),
                f"the slide {link / 'b.png'}": _submit(out, slides / "c.jpg", link / "b.png"),
                f"the slides folder {out / inside}": [
                    "pathology", "run", str(out / inside), "--out", str(out), "--um-per-px", "1"],
                f"the slides folder {link}": [
                    "pathology", "run", str(link), "--out", str(out), "--um-per-px", "1"]}
    for named, command in commands.items():
        for force in ([], ["--force"]):
            assert main([*command, *force]) == 2
            err = capsys.readouterr().err
            assert f"{named} lies inside --out {out} (in {inside}/" in err, err
            assert _files_of(out) == before


def test_slides_in_a_folder_of_their_own_inside_out_are_scored_and_kept(
    slides: Path, tmp_path: Path,
) -> None:
    """Only the folders a run replaces are refused: out/slides is left as it is."""
    out = tmp_path / "out"
    (out / "slides").mkdir(parents=True)
    (out / "slides" / "a.jpg").write_bytes((slides / "a.jpg").read_bytes())
    kept = (out / "slides" / "a.jpg").read_bytes()
    for _ in range(2):
        assert main(["pathology", "run", str(out / "slides"), "--out", str(out),
                     "--um-per-px", "1", "--force", "--no-pictures"]) == 0
    assert (out / "slides" / "a.jpg").read_bytes() == kept
    assert _slides_in(out)["results.csv"] == ["a"]


def test_a_run_stopped_by_ctrl_c_says_how_far_it_got_and_that_out_is_as_it_was(
    slides: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It exited 130 without a word, though none of the slides it had scored is in --out."""
    from appliance.pathology.run import SlideRunner

    scored, runs = SlideRunner.run, list[Any]()

    def run_then_ctrl_c(self: SlideRunner, job: Any) -> Any:
        runs.append(job)
        if len(runs) > 1:
            raise KeyboardInterrupt
        return scored(self, job)

    monkeypatch.setattr(SlideRunner, "run", run_then_ctrl_c)
    out = tmp_path / "out"
    command = ["pathology", "run", str(slides), "--um-per-px", "1", "--out", str(out)]
    assert main(command) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pathology run: stopped after 1 of 3 slides scored; none of their results are in "
        f"{out} (a run puts them there only when every slide is scored; what it held before "
        "is as it was): the same command again scores them all")
    assert list(out.iterdir()) == []
