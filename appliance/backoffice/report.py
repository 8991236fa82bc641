"""``appliance report cohort``: box plots by age band, correlations and CIs, repeats (PNG, HTML)."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.backoffice.agebands import REPORT_FEATURES, Correlation, age_axis
from appliance.backoffice.cohort import Cohort, Repeat, by_band, load_cohort, repeats, summary
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.retention import Period
from appliance.backoffice.store import Store
from appliance.kioskname import chosen_text
from appliance.logsafe import escape_controls
from appliance.outfile import OutputError, flush_folder_of, replaced_when_complete

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPEAT_COLUMNS = ("kime_score", "hill_density_per_mm2", "furrow_density_mm_per_mm2",
                  "pore_count")
MAX_REPEAT_ROWS = 50


def _fmt(corr: Correlation) -> str:
    return corr.text()


def draw_feature(cohort: Cohort, key: str, corr: dict[str, Correlation], out: Path) -> None:
    """One PNG: the feature's box plot per age band (feature_figure)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (the backoffice extra; reports only)

    fig = feature_figure(cohort, key, corr)
    try:
        with replaced_when_complete(out) as temp:  # a full disk leaves no empty PNG behind
            fig.savefig(temp)
    finally:
        plt.close(fig)


def feature_figure(cohort: Cohort, key: str, corr: dict[str, Correlation]) -> Figure:
    """The feature's box plot per age band, every band of the range on the axis (one without
    a measured value marked n=0), titled with both correlations; close it when done."""
    import matplotlib  # noqa: PLC0415  (the backoffice extra; reports only)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    groups = by_band(cohort, key)
    axis = age_axis(cohort.bands)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if groups:
        ax.boxplot(list(groups.values()), positions=[axis.index(b) + 1 for b in groups],
                   showmeans=True)
    ax.set_xticks(range(1, len(axis) + 1),
                  [f"{b}\n(n={len(groups.get(b, ()))})" for b in axis])
    ax.set_xlim(0.5, len(axis) + 0.5)
    ax.set_xlabel("age band")
    ax.set_ylabel(key)
    ax.set_title(
        f"{key}\nPearson {_fmt(corr['pearson'])}  Spearman {_fmt(corr['spearman'])}",
        fontsize=9,
    )
    fig.tight_layout()
    # laid out once, here: tight_layout leaves a placeholder layout engine behind, for which
    # savefig would draw the whole figure a second time (text, ticks) before drawing it to file
    fig.set_layout_engine(None)
    return fig


def report_files(out_dir: Path) -> list[Path]:
    """Every file a report writes into ``out_dir``, the page first."""
    figures = [out_dir / f"{key}.png" for key in REPORT_FEATURES]
    return [out_dir / "index.html", out_dir / "summary.json", *figures]


def write_cohort_report(store: Store, out_dir: Path, where: ResultFilter | None = None) -> Path:
    """Write the PNG figures, summary.json and index.html into ``out_dir`` of the results
    ``where`` selects (a site, a kiosk; every result when None); returns the page.

    The files are written into a hidden folder inside ``out_dir`` and moved in only once all
    are written, the page last: a full disk or a stop midway leaves ``out_dir`` as it was.
    Written in place, a disk that filled at the third figure left two, which the next run
    refused as "an earlier report" (and, with --force, beside the earlier report's page).
    """
    where = where or ResultFilter()
    cohort = load_cohort(store, where)
    if not cohort.count:
        chosen = chosen_text(where.site, where.device_id)
        raise ValueError(f"no stored result{chosen} has an age band (subject.age_band); "
                         "nothing to plot")
    repeated = repeats(store, where=where)  # all read before any file is written: a store
    period = store.covered_period(where)  # failing on the way leaves the last report as it was
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(out_dir)
    try:
        try:
            _write_files(cohort, repeated, (period, where), staging)
        except OutputError as exc:
            raise _named_in(out_dir, exc) from exc
        for path in reversed(report_files(staging)):  # the page last
            os.replace(path, out_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    flush_folder_of(out_dir / "index.html")
    return out_dir / "index.html"


def _staging_folder(out_dir: Path) -> Path:
    try:
        return Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-"))
    except OSError as exc:
        raise OutputError(exc.errno, f"could not make a folder for the report's files in it "
                          f"({exc.strerror or exc}); nothing written", str(out_dir)) from exc


def _named_in(out_dir: Path, exc: OutputError) -> OutputError:
    """The failed write named by the file of ``out_dir`` it was for, not the hidden folder's."""
    cause = exc.__cause__
    why = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc.strerror
    name = out_dir / Path(str(exc.filename)).name
    return OutputError(exc.errno, f"could not write it ({why}); no file of this report was put "
                       f"in {out_dir}, what was there is as it was", str(name))


def _write_files(cohort: Cohort, repeated: list[Repeat], covered: tuple[Period, ResultFilter],
                 folder: Path) -> None:
    table = summary(cohort)
    for key in REPORT_FEATURES:
        draw_feature(cohort, key, table[key], folder / f"{key}.png")
    with replaced_when_complete(folder / "summary.json") as temp, temp.open(
            "w", encoding="utf-8") as stream:  # written as encoded: one entry a repeated subject
        json.dump(_json_summary(cohort, table, repeated, covered), stream, indent=2)
    _write_whole(folder / "index.html", _html(cohort, table, repeated, covered))


def _write_whole(path: Path, text: str) -> None:
    with replaced_when_complete(path) as temp:
        temp.write_text(text, encoding="utf-8")


def _corr_json(corr: Correlation) -> dict[str, Any]:
    def number(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 4)

    p_value = None if math.isnan(corr.p_value) else float(f"{corr.p_value:.3g}")
    return {"r": number(corr.r), "ci95": [number(corr.low), number(corr.high)],
            "p": p_value, "n": corr.n}


def _json_summary(cohort: Cohort, table: dict[str, Any], repeated: list[Repeat],
                  covered: tuple[Period, ResultFilter]) -> dict[str, Any]:
    def number(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 4)

    period, where = covered
    return {
        "period": dataclasses.asdict(period),
        "selection": {"site": where.site, "device_id": where.device_id},
        "results_with_age_band": cohort.count,
        "not_measured_left_out": {key: cohort.not_measured(key) for key in REPORT_FEATURES},
        "correlation_with_age": {
            key: {kind: _corr_json(c) for kind, c in pair.items()} for key, pair in table.items()
        },
        "repeated_subjects": [
            {"subject_id": rep.subject_id, "count": rep.count, "devices": rep.devices,
             "cv_percent": {k: number(v) for k, v in rep.cv_percent.items()}}
            for rep in repeated
        ],
    }


def _html(cohort: Cohort, table: dict[str, Any], repeated: list[Repeat],
          covered: tuple[Period, ResultFilter]) -> str:
    period, where = covered
    chosen = chosen_text(where.site, where.device_id)
    selection = f"<p id='selection'>Only the results{html.escape(chosen)}.</p>" if chosen else ""
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{_fmt(pair['pearson'])}</td>"
        f"<td>{_fmt(pair['spearman'])}</td><td>{pair['pearson'].n}</td>"
        f"<td>{cohort.not_measured(key)}</td></tr>"
        for key, pair in table.items()
    )
    left_out = sum(cohort.not_measured(key) for key in REPORT_FEATURES)
    figures = "".join(
        f'<figure><img src="{html.escape(key)}.png" alt="{html.escape(key)} by age band">'
        "</figure>"
        for key in REPORT_FEATURES
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Cohort report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}figure{display:inline-block;margin:4px}"
        "</style></head><body><h1>Skin texture and pores by age band</h1>"
        f"<p id='period'>{html.escape(period.text())}</p>{selection}"
        f"<p>{cohort.count} stored results with an age band. Correlation with age "
        "(band midpoints): r with its 95% confidence interval (Fisher z).</p>"
        f"<p id='left-out'>{left_out} values left out of every figure: not measured (outside "
        "the validated range, docs/measurement.md); each feature's count is in the table.</p>"
        "<table><tr><th>feature</th><th>Pearson r [95% CI]</th><th>Spearman &rho; [95% CI]"
        "</th><th>n</th><th>left out: not measured</th></tr>"
        f"{rows}</table>{figures}{_repeat_html(repeated)}</body></html>\n"
    )


def _repeat_html(repeated: list[Repeat]) -> str:
    if not repeated:
        return "<h2>Repeat measurements</h2><p>No subject was measured more than once.</p>"
    head = "".join(f"<th>{html.escape(c)} mean &plusmn; SD (CV%)</th>" for c in REPEAT_COLUMNS)
    body = "".join(
        f"<tr><td>{html.escape(escape_controls(rep.subject_id))}</td>"  # a kiosk's free text
        f"<td>{rep.count}</td><td>{rep.devices}</td>"
        + "".join(
            f"<td>{rep.mean[c]:.2f} &plusmn; {rep.sd[c]:.2f} ({rep.cv_percent[c]:.1f}%)</td>"
            for c in REPEAT_COLUMNS
        )
        + "</tr>"
        for rep in repeated[:MAX_REPEAT_ROWS]
    )
    more = len(repeated) - MAX_REPEAT_ROWS
    note = f"<p>{more} more subjects in summary.json.</p>" if more > 0 else ""
    return (
        f"<h2>Repeat measurements of the same subject</h2><p>{len(repeated)} subjects.</p>"
        f"<table><tr><th>subject</th><th>n</th><th>devices</th>{head}</tr>{body}</table>{note}"
    )
