"""The synthetic H&E cohort: labels by patient, recorded resolution, MSI histology."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.cli import main
from appliance.pathology.stain import REFERENCE, stain_concentrations
from appliance.synthetic.he import SlideSpec, _progress_bar, cohort_specs, render_slide
from tests.he_slides import placeholder_slide
from tests.pool_helpers import kill_a_worker


def test_cohort_is_deterministic_and_labelled_by_patient() -> None:
    specs = cohort_specs(60, seed=3)
    assert specs == cohort_specs(60, seed=3)
    assert len({spec.patient for spec in specs}) == 60
    by_patient: dict[str, set[str]] = {}
    for spec in specs:
        by_patient.setdefault(spec.patient, set()).add(spec.label)
    assert all(len(labels) == 1 for labels in by_patient.values())
    assert {spec.material for spec in specs} == {"biopsy", "surgical"}
    msi = sum(spec.label == "MSI" for spec in specs if spec.slide.endswith(("-S", "-B")))
    assert 0.15 < msi / len(specs) < 0.6


def test_synth_he_to_an_unwritable_out_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "slides"
    taken.write_text("a file")
    assert main(["synth", "he", "--out", str(taken), "--patients", "1", "--quiet"]) == 2
    assert f"synth he: cannot write to --out '{taken}'" in capsys.readouterr().err
    assert taken.read_text() == "a file"


def test_synth_he_into_a_log_says_its_progress_in_plain_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With stderr a file or the journal, not a terminal, the bar wrote a carriage-return
    line every tenth of a second a large cohort took: now a plain line at each tenth. (The
    slides' pixels are not the point: test_synth_he_writes_slides_and_labels paints them.)"""
    from appliance.synthetic import he

    monkeypatch.setattr(he, "_write_slide", placeholder_slide)
    assert main(["synth", "he", "--out", str(tmp_path), "--patients", "2", "--seed", "4"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("painting slides: ")]
    assert lines == ["painting slides: 1/2 slides (50%)", "painting slides: 2/2 slides (100%)"]
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["P0000-S.jpg", "P0001-S.jpg"]


def test_a_large_cohort_into_a_log_says_a_line_at_each_tenth_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bar of 1,000 slides with stderr no terminal (capsys): its first slide, then each
    tenth, eleven lines, not one a slide (the slides themselves: the test above)."""
    with _progress_bar(1000, shown=True) as bar:
        for _slide in range(1000):
            bar.update()
    tenths = [1, *range(100, 1001, 100)]
    assert capsys.readouterr().err.splitlines() == [
        f"painting slides: {done}/1000 slides ({done // 10}%)" for done in tenths]


@pytest.mark.slow
def test_synth_he_writes_slides_and_labels(tmp_path: Path) -> None:
    assert main(["synth", "he", "--out", str(tmp_path), "--patients", "1", "--seed", "4"]) == 0
    with (tmp_path / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        assert row["label"] in ("MSI", "MSS")
        assert float(row["um_per_px"]) == 1.0
        assert (tmp_path / f"{row['slide']}.jpg").stat().st_size > 100_000


@pytest.mark.slow
def test_msi_slides_carry_more_lymphocytes() -> None:
    base = SlideSpec("x", "P", "MSS", "biopsy", stain_batch=0, msi_propensity=0.1, seed=11)
    mss = render_slide(base)
    msi = render_slide(replace(base, label="MSI", msi_propensity=0.9))

    def dark_nuclei_share(rgb: np.ndarray) -> float:
        hematoxylin = stain_concentrations(rgb[::2, ::2], REFERENCE)[..., 0]
        return float((hematoxylin > 1.2).mean())

    assert dark_nuclei_share(msi) > 1.5 * dark_nuclei_share(mss)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--patients", "0"], "--patients: must be a whole number from 1 to 10000, got '0'"),
        (["--patients", "1e9"], "--patients: expected a whole number in ASCII digits, got '1e9'"),
        (["--seed=-1"], "--seed: must be a whole number from 0 to 9223372036854775807, got"),
        (["--msi-fraction", "nan"], "--msi-fraction: must be a finite number from 0 to 1 (a "
         "share of the patients), got 'nan'"),
        (["--msi-fraction", "1.5"], "--msi-fraction: must be a finite number from 0 to 1"),
        (["--workers", "0"], "--workers: must be a whole number from 1 to 256, got '0'"),
    ],
)
def test_bad_he_arguments_exit_2_naming_the_option_and_its_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "cohort"
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "he", "--out", str(out), "--patients", "1", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_labels_are_written_whole_or_the_old_ones_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails halfway (a full disk) leaves the labels.csv that was there, not one
    cut short that names only some of the slides."""
    from appliance.synthetic import he

    specs = [SlideSpec(f"s{i}", f"P{i}", "MSI", "biopsy", stain_batch=1, msi_propensity=0.5,
                       seed=i) for i in range(3)]
    monkeypatch.setattr(he, "_write_slide", lambda job: None)  # the slides are not the point
    (tmp_path / "labels.csv").write_text("the labels of the last cohort\n")
    real_writer = csv.writer

    class FailingOnTheThirdRow:
        def __init__(self, handle: Any) -> None:
            self.inner, self.rows = real_writer(handle), 0

        def writerow(self, row: list[Any]) -> None:
            self.rows += 1
            if self.rows == 3:
                raise OSError(28, "No space left on device")
            self.inner.writerow(row)

    monkeypatch.setattr(he.csv, "writer", FailingOnTheThirdRow)
    with pytest.raises(OSError, match="No space left"):
        he.write_cohort(tmp_path, specs)
    assert (tmp_path / "labels.csv").read_text() == "the labels of the last cohort\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]  # no temp left


@pytest.mark.slow  # a real worker killed with SIGKILL
def test_synth_he_with_a_worker_killed_says_so_not_a_traceback(tmp_path: Path) -> None:
    # It said 'a worker process ended abruptly (killed, or out of memory)': which one, and what
    # does the folder hold?
    out = tmp_path / "cohort"
    code, err, killed = kill_a_worker(["synth", "he", "--out", str(out), "--patients", "40",
                                       "--workers", "2", "--quiet"])
    assert code == 1, err
    painted = len(list(out.glob("*.jpg")))
    again = "with --force" if painted else "again"
    assert err == (f"synth he: worker process {killed} was killed by SIGKILL "
                   f"(kill -9, or out of memory) with {painted} of {len(cohort_specs(40, 0))} "
                   f"slides painted in {out} and no labels.csv, which a pathology run needs; "
                   f"the same command {again} paints the whole cohort\n")
    assert not (out / "labels.csv").exists()


def test_synth_he_stopped_midway_says_the_cohort_has_no_labels_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while the slides were painted ended it without a word (exit 130), leaving slides
    and no labels.csv; a pathology run on the folder then failed each slide as "resolution
    unknown". Now it says how far it got, what is missing and how to finish."""
    from appliance.synthetic import he

    def stopped_after_one(out_dir: Path, specs: list[SlideSpec], **_: Any) -> Path:
        (out_dir / f"{specs[0].slide}.jpg").write_bytes(b"painted")
        raise KeyboardInterrupt

    monkeypatch.setattr(he, "write_cohort", stopped_after_one)
    out = tmp_path / "cohort"
    assert main(["synth", "he", "--out", str(out), "--patients", "3", "--seed", "1"]) == 130
    slides = len(cohort_specs(3, 1))
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"synth he: stopped with 1 of {slides} slides painted in {out} and no "
        "labels.csv, which a pathology run needs; the same command with --force paints the "
        "whole cohort")


def test_a_cohort_already_in_out_is_kept_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`synth he --out DIR` painted over DIR's cohort without a word (`results export` refuses
    and names --force): slides are named by patient (P0000-S), whatever the seed, so another
    seed's cohort replaced the first one's slides and labels.csv. Its labels.csv, or a slide
    of its names (a stopped cohort's), is refused before any slide is painted; --force
    replaces them."""
    from appliance.synthetic import he

    def painted(job: Any) -> None:
        spec, out_dir, _ = job
        (out_dir / f"{spec.slide}.jpg").write_bytes(b"painted")

    monkeypatch.setattr(he, "_write_slide", painted)  # the slides' pixels are not the point
    slide = tmp_path / f"{cohort_specs(1, 4)[0].slide}.jpg"
    labels = tmp_path / "labels.csv"
    command = ["synth", "he", "--out", str(tmp_path), "--patients", "1", "--seed", "4",
               "--quiet"]
    for earlier in (labels, slide):
        earlier.write_text("the last cohort's\n")
        assert main(command) == 2
        assert capsys.readouterr() == ("", f"synth he: {earlier} exists; pass "
                                           "--force to replace it\n")
        assert sorted(tmp_path.iterdir()) == [earlier]
        assert earlier.read_text() == "the last cohort's\n"
        earlier.unlink()
    assert main(command) == 0
    assert main(command) == 2
    assert capsys.readouterr().err.startswith(f"synth he: {labels} and ")
    labels.write_text("the last cohort's\n")
    assert main([*command, "--force"]) == 0
    assert labels.read_text().startswith("slide,patient,label")
    assert slide.read_bytes() == b"painted"

