"""``pathology evaluate``: the paper's Table 2 layout over k runs, per material, with CIs.

Each results folder is one run (e.g. a model trained with another seed). Slides are joined to
labels.csv by name; with --splits only the patients of one split (default: test) count, so a
model is never scored on the patients it learnt from. Bootstrap CIs resample patients. Slides
labelled ``unsupported`` (tissue unlike the training data) and failed slides are counted apart,
never in the metrics and never silently. JSON output has no NaN: a missing number is null.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from appliance import safejson
from appliance.csvcells import cell_text
from appliance.logsafe import escape_controls
from appliance.pathology.labels import LabelRow, LabelsError, read_labels, table_rows, table_text
from appliance.pathology.metrics import (
    METRIC_NAMES,
    Confusion,
    binary_metrics,
    bootstrap_ci,
    confusion,
)
from appliance.pathology.names import one_form
from appliance.pathology.outfolder import RESULTS_CSV, RESULTS_JSON
from appliance.pathology.overlap import find_overlap
from appliance.pathology.verdict import UNSUPPORTED, UNSUPPORTED_REASON
from appliance.texttable import counted

POSITIVE = "MSI"
# The source paper's Table 2 (mean of 3 runs); it reports no sensitivity or AUROC.
PAPER = {"accuracy": 0.744, "precision": 0.761, "specificity": 0.542, "f_measure": 0.810}
PAPER_NAME = ("source paper, Table 2: VGG19 transfer learning on real H&E colorectal slides, "
              "mean of 3 runs (not comparable with a synthetic cohort)")
MIN_CI_PATIENTS = 10  # a bootstrap over fewer patients gives intervals that mean nothing
T = TypeVar("T", LabelRow, dict[str, str])  # a labels.csv or a results.csv row


@dataclass(frozen=True)
class RunData:
    """One run joined to the labels: truth, score, patient and material per slide."""

    name: str
    threshold: float
    truth: np.ndarray
    scores: np.ndarray
    patients: np.ndarray
    materials: np.ndarray
    unsupported: int = 0
    failed: int = 0


RESULT_COLUMNS = ("slide", "label", "score", "error")  # of results.csv, that evaluate reads
RESULTS_HINT = "the --out folder of `pathology run`"


def load_run(folder: Path, labels: dict[str, LabelRow], patients: set[str] | None) -> RunData:
    """Read one results folder and keep the labelled, scored slides (of the chosen patients)."""
    results = folder / RESULTS_CSV
    if not results.is_file():
        raise LabelsError(f"{results}: not found; pass {RESULTS_HINT}")
    meta = run_summary(folder)
    read = [(line, {**row, "slide": one_form(cell_text(row["slide"] or ""))})  # as labels
            for line, row in table_rows(results, RESULT_COLUMNS, RESULTS_HINT)]
    rows = once_per_slide(results, read, "each run's results go in a --results folder of "
                          "their own")
    rows = [(line, r) for line, r in rows if r["slide"] in labels]
    rows = [(line, r) for line, r in rows
            if patients is None or labels[r["slide"]].patient in patients]
    failed = sum(1 for _, row in rows if row["error"])
    unsupported = sum(1 for _, row in rows if not row["error"] and row["label"] == UNSUPPORTED)
    labelled = len(rows)
    rows = [(line, r) for line, r in rows if not r["error"] and r["label"] != UNSUPPORTED]
    if not rows:
        raise LabelsError(_none_scored(results, labelled, unsupported, failed))
    chosen = [labels[row["slide"]] for _, row in rows]
    return RunData(
        name=folder.name,
        threshold=float(meta.get("threshold", 0.5)),
        truth=np.array([row.label == POSITIVE for row in chosen]),
        scores=np.array([_score(results, line, row["score"]) for line, row in rows]),
        patients=np.array([row.patient for row in chosen]),
        materials=np.array([row.material or "unknown" for row in chosen]),
        unsupported=unsupported,
        failed=failed,
    )


def _none_scored(results: Path, labelled: int, unsupported: int, failed: int) -> str:
    """Why a run leaves no slide to compute metrics on: none is labelled, or every labelled
    one is unsupported or failed (not a naming problem, which the first reads as)."""
    if labelled == 0:
        return f"{results}: no slide in it is named in the labels (and split)"
    return (f"{results}: none of its {labelled} labelled slide(s) has a score to evaluate: "
            f"{unsupported} {UNSUPPORTED} (tissue unlike the model's training data), "
            f"{failed} failed")


def once_per_slide(path: Path, rows: list[tuple[int, T]], fix: str) -> list[tuple[int, T]]:
    """The rows, refused naming the line when a slide comes again (its last row used to win
    in labels, and a repeated result counted twice in the metrics)."""
    first: dict[str, int] = {}
    for line, row in rows:
        slide = row.slide if isinstance(row, LabelRow) else row["slide"]
        seen = first.setdefault(slide, line)
        if seen != line:
            raise LabelsError(f"{path}:{line}: slide {slide[:80]!r} again (first on line "
                              f"{seen}); one row per slide: {fix}")
    return rows


def run_summary(folder: Path) -> dict[str, Any]:
    """A run's run.json ({} when it has none)."""
    summary = folder / RESULTS_JSON
    if not summary.is_file():
        return {}
    try:
        meta = safejson.loads(table_text(summary, f"pass {RESULTS_HINT}"))
    except ValueError as exc:
        raise LabelsError(f"{summary}: not the JSON `pathology run` writes ({exc})") from exc
    if not isinstance(meta, dict):
        raise LabelsError(f"{summary}: not the JSON `pathology run` writes (no object)")
    return meta


def _score(results: Path, line: int, text: str) -> float:
    """A scored slide's score, refused naming the file and line unless a finite number."""
    try:
        score = float(text)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise LabelsError(f"{results}:{line}: score {text[:40]!r} of a scored slide is no "
                          "finite number; pass the results.csv `pathology run` wrote")
    return score


def read_split(path: Path, split: str) -> set[str]:
    """Patients of one split in a patient,split CSV."""
    rows = table_rows(path, ("patient", "split"), "the patient,split CSV of the training")
    chosen = {one_form(row["patient"] or "") for _, row in rows if row["split"] == split}
    if not chosen:
        raise LabelsError(f"{path}: no patient in split {split!r}")
    return chosen


@dataclass(frozen=True)
class SubsetReport:
    """Metrics of one run on one group of slides."""

    slides: int
    patients: int
    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    confusion: Confusion


@dataclass(frozen=True)
class GroupReport:
    """A group (all, biopsy, surgical) over every run, with mean and sd across runs."""

    per_run: list[SubsetReport | None]
    summary: dict[str, tuple[float, float]]


def subset_metrics(run: RunData, mask: np.ndarray, resamples: int) -> SubsetReport:
    """Metrics, CIs and confusion of the slides selected by mask."""
    truth, scores = run.truth[mask], run.scores[mask]
    return SubsetReport(
        slides=int(mask.sum()),
        patients=len(set(run.patients[mask])),
        metrics=binary_metrics(truth, scores, run.threshold),
        ci95=_ci95(run, mask, resamples),
        confusion=confusion(truth, scores >= run.threshold),
    )


def _ci95(run: RunData, mask: np.ndarray, resamples: int) -> dict[str, tuple[float, float]]:
    """Patient-bootstrap CIs, or NaN ones when too few patients make them meaningless."""
    patients = run.patients[mask]
    if len(set(patients)) < MIN_CI_PATIENTS:
        return dict.fromkeys(METRIC_NAMES, (math.nan, math.nan))
    return bootstrap_ci(run.truth[mask], run.scores[mask], run.threshold, patients,
                        resamples=resamples)


def evaluate_runs(runs: list[RunData], resamples: int) -> dict[str, GroupReport]:
    """Per material group (all, then each material): every run, plus mean and sd across runs."""
    groups = ["all", *sorted({str(m) for run in runs for m in run.materials})]
    report = {}
    for group in groups:
        per_run = []
        for run in runs:
            mask = np.ones(len(run.truth), bool) if group == "all" else run.materials == group
            per_run.append(subset_metrics(run, mask, resamples) if mask.any() else None)
        report[group] = GroupReport(per_run, _across(per_run))
    return report


def _across(per_run: list[SubsetReport | None]) -> dict[str, tuple[float, float]]:
    """Mean and sample sd of each metric across runs (sd NaN with one run)."""
    summary = {}
    for name in METRIC_NAMES:
        values = [run.metrics[name] for run in per_run if run is not None]
        finite = [v for v in values if math.isfinite(v)]
        mean = float(np.mean(finite)) if finite else float("nan")
        sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        summary[name] = (mean, sd)
    return summary


def _number(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def format_group(name: str, group: GroupReport, runs: list[RunData]) -> str:
    """One Table-2 style block: metrics by run with CIs, mean ± sd, the paper's figures."""
    first = next(run for run in group.per_run if run is not None)
    thresholds = ", ".join(f"{run.threshold:.3f}" for run in runs)
    lines = [f"{name}: {counted(first.slides, 'slide')}, {counted(first.patients, 'patient')} "
             f"(threshold {thresholds}; 95% CI by patient bootstrap)"]
    header = f"  {'metric':<12}" + "".join(f"{'run ' + str(i + 1):<24}" for i in range(len(runs)))
    lines.append(header + f"{'mean ± sd':<18}paper*")
    for metric in METRIC_NAMES:
        cells = ""
        for run in group.per_run:
            if run is None:
                cells += f"{'-':<24}"
                continue
            low, high = run.ci95[metric]
            interval = ("[n too small]" if run.patients < MIN_CI_PATIENTS
                        else f"[{_number(low)}-{_number(high)}]")
            cells += f"{_number(run.metrics[metric]) + ' ' + interval:<24}"
        mean, sd = group.summary[metric]
        paper = _number(PAPER[metric]) if metric in PAPER else "-"
        lines.append(f"  {metric:<12}{cells}{_number(mean) + ' ± ' + _number(sd):<18}{paper}")
    for index, run in enumerate(group.per_run):
        if run is not None:
            c = run.confusion
            lines.append(f"  confusion run {index + 1}: true MSI -> TP {c.tp} FN {c.fn}; "
                         f"true MSS -> FP {c.fp} TN {c.tn}")
    lines.append(f"  * {PAPER_NAME}")
    if first.patients < MIN_CI_PATIENTS:
        patients = counted(first.patients, "patient")
        lines.append(f"  no CIs: {patients} (fewer than {MIN_CI_PATIENTS})")
    return "\n".join(lines)


def json_safe(value: object) -> object:
    """The value with every NaN or infinity replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def evaluate_command(args: argparse.Namespace) -> int:
    """The body of ``pathology evaluate``; 2 with a message when inputs are unusable."""
    try:
        rows = list(enumerate(read_labels(args.labels), start=2))
        labels = {row.slide: row for _, row in once_per_slide(
            args.labels, rows, "give each slide one label")}
        patients = read_split(args.splits, args.split) if args.splits else None
        runs = [load_run(folder, labels, patients) for folder in args.results]
        overlap = find_overlap(args.labels, args.results, patients)
    except (LabelsError, OSError, ValueError, KeyError) as exc:
        print(f"pathology evaluate: {exc}", file=sys.stderr)
        return 2
    if overlap is not None:
        print(f"pathology evaluate: {overlap.describe()}", file=sys.stderr)
        if not args.splits:
            print("pathology evaluate: refused; pass --splits with the model's split file (e.g. "
                  "appliance/shipped/msi-vgg19-w16.splits.csv) to score its held-out patients, "
                  "or evaluate a cohort of another seed", file=sys.stderr)
            return 2
    report = evaluate_runs(runs, args.bootstrap)
    if args.json:
        out = {name: asdict(group) for name, group in report.items()}
        apart = [{"run": r.name, "unsupported": r.unsupported, "failed": r.failed} for r in runs]
        document = {"runs": [r.name for r in runs], "paper": PAPER, "paper_name": PAPER_NAME,
                    "groups": out, "counted_apart": apart,
                    "unsupported_reason": UNSUPPORTED_REASON}
        print(json.dumps(json_safe(document), allow_nan=False, default=str))
        return 0
    print(f"MSI vs MSS, slide level, {len(runs)} run(s): {', '.join(r.name for r in runs)}")
    for run in runs:
        print(f"{run.name}: {run.unsupported} slide(s) {UNSUPPORTED} ({UNSUPPORTED_REASON}) and "
              f"{run.failed} failed, counted apart (not in the metrics)")
    for name, group in report.items():  # a material's name comes from labels.csv: escaped
        print()
        print(format_group(escape_controls(name), group, runs))
    return 0
