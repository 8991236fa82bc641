"""Cohort figures from grouped sums equal the offline report's; kiosk reference ranges."""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from console_helpers import (
    BANDS,
    NOT_VALIDATED_IN_SEED,
    PASSWORD,
    UNMEASURED_KIME,
    Console,
    free_port,
    get_with,
    login_cookie,
    make_result,
    seed,
)

from appliance.backoffice.agebands import REPORT_FEATURES, Correlation
from appliance.backoffice.cohort import Cohort, by_band, correlations, load_cohort, repeats
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.cli import main
from appliance.config import ConsoleConfig
from appliance.console.auth import add_user
from appliance.console.cohortview import (
    FeatureView,
    band_stats,
    feature_views,
    repeat_rows,
    svg_plot,
)
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread
from appliance.console.views import CohortCache
from appliance.edge.screen_view import load_references, result_view
from tests.store_helpers import BACKENDS, fresh_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "test_console", open_store) as opened:
        seed(opened)
        yield opened


def test_band_means_and_pearson_from_sums_match_the_offline_report(store: Store) -> None:
    views = {v.key: v for v in feature_views(store.band_sums(REPORT_FEATURES))}
    cohort = load_cohort(store)
    ages = cohort.ages()
    for key in ("kime_score", "hill_density_per_mm2", "pore_count"):
        pearson, _ = correlations(ages, cohort.values[key])
        view = views[key].pearson
        left_out = {"kime_score": 1, "hill_density_per_mm2": 1, "pore_count": 0}[key]
        assert views[key].not_measured == cohort.not_measured(key) == left_out
        assert view.n == pearson.n == 54 - left_out  # 54 results with an age band
        assert view.r == pytest.approx(pearson.r, abs=1e-9)
        assert (view.low, view.high) == pytest.approx((pearson.low, pearson.high), abs=1e-9)
        assert view.p_value == pytest.approx(pearson.p_value, rel=1e-6, abs=1e-300)
        for band in views[key].bands:
            values = by_band(cohort, key)[band.band]  # measured values only
            assert band.n == len(values)
            assert band.mean == pytest.approx(values.mean())
            # from sums of squares: exact to about 1e-7 of the mean (cancellation)
            assert band.sd == pytest.approx(values.std(ddof=1), abs=1e-6 * abs(band.mean))
            assert band.low <= band.mean <= band.high


def test_values_outside_the_validated_range_are_left_out_of_the_cohort(store: Store) -> None:
    index = 7  # hills too large: its texture features and kime score were not measured
    assert "kime_score" in NOT_VALIDATED_IN_SEED[index]
    band = BANDS[index % len(BANDS)]
    measured = [make_result(i, "s", "d", band).features.kime_score
                for i in range(60) if i % 10 and BANDS[i % len(BANDS)] == band and i != index]
    view = next(v for v in feature_views(store.band_sums(REPORT_FEATURES))
                if v.key == "kime_score")
    (stats,) = [b for b in view.bands if b.band == band]
    assert stats.n == len(measured)
    assert stats.mean == pytest.approx(np.mean(measured))  # 3.0 would pull it down by ~6
    assert stats.low > UNMEASURED_KIME
    offline = load_cohort(store)
    assert np.mean(by_band_values(offline, "kime_score", band)) == pytest.approx(stats.mean)
    subject = "subj-3"  # index 7's subject, measured four times
    (online,) = [r for r in repeat_rows(store) if r["subject_id"] == subject]
    (report,) = [r for r in repeats(store) if r.subject_id == subject]
    kept = [make_result(i, "s", "d", BANDS[i % len(BANDS)]).features.kime_score
            for i in (3, 11, 15)]  # subj-3 at indexes 3, 7, 11, 15; 7 not measured
    cv = 100 * np.std(kept, ddof=1) / np.mean(kept)
    assert online["cv_percent"]["kime_score"] == pytest.approx(cv)
    assert report.cv_percent["kime_score"] == pytest.approx(cv)


def by_band_values(cohort: Cohort, key: str, band: str) -> list[float]:
    return [float(v) for v in by_band(cohort, key)[band]]


def test_kiosk_reference_ranges_from_the_console_place_a_customer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    seeded = open_store(url)
    seed(seeded)
    seeded.close()
    out = tmp_path / "reference.json"
    assert main(["console", "reference", "--store", url, "--out", str(out)]) == 0
    references = load_references(out)
    assert set(references) == {"20-29", "30-39", "40-49", "50-59", "60-69", "all"}
    young = make_result(1, "tokyo", "kiosk-1", "20-29")  # fine skin: kime about 80
    view = result_view(young, references, overlay=False)
    kime = next(f for f in view["features"] if f["key"] == "kime_score")
    assert view["reference_band"] == "20-29"
    assert kime["standing"]["where"] == "within"
    against_old = result_view(make_result(1, "tokyo", "kiosk-1", "60-69"), references, False)
    assert against_old["reference_band"] == "60-69"
    old = references["60-69"]["kime_score"]
    assert math.isclose(old["mean"] + 1.2815515655446004 * old["sd"],
                        next(f for f in against_old["features"]
                             if f["key"] == "kime_score")["standing"]["high"])


def test_console_reference_names_the_bands_it_wrote_and_those_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a demo with one result in 40-49 and one in 50-59, `console reference` said "wrote
    reference ranges of 3 age band(s)" of five with results: which three, and why not the
    others, the operator had to find in the file. A band needs two results for a range; a
    kiosk compares a customer of a band left out with the bands written, pooled (all)."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    seeded = open_store(url)
    seed(seeded, count=7)  # 30-39 twice; 20-29, 40-49, 50-59, 60-69 once; one without a band
    seeded.close()
    out = tmp_path / "reference.json"
    assert main(["console", "reference", "--store", url, "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"wrote reference ranges of 1 age band(s) (30-39) to {out}\n"
        "left out, with fewer than two results: 20-29, 40-49, 50-59, 60-69 (a kiosk compares a "
        "customer of such a band with the bands written, pooled)\n")
    references = load_references(out)
    assert set(references) == {"30-39", "all"}
    view = result_view(make_result(1, "tokyo", "kiosk-1", "60-69"), references, overlay=False)
    assert view["reference_band"] == "all"


def test_console_reference_never_replaces_a_pipe_or_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out /dev/null` as root replaced the system's /dev/null with a regular file (a pipe
    stands in for the device here)."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    seeded = open_store(url)
    seed(seeded)
    seeded.close()
    pipe = tmp_path / "reference.json"
    os.mkfifo(pipe)
    assert main(["console", "reference", "--store", url, "--out", str(pipe)]) == 1
    assert f"console reference: {pipe}: not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_console_reference_keeps_an_existing_file_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`console reference --out F` wrote over F without a word, as `results export` does not:
    an existing F is refused before the store is read (a store that is not there is not even
    opened), and --force replaces it."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    seeded = open_store(url)
    seed(seeded)
    seeded.close()
    out = tmp_path / "reference.json"
    out.write_text("the ranges the kiosks use now\n")
    missing = f"sqlite:///{tmp_path / 'no-such.sqlite3'}"
    for store in (url, missing):
        assert main(["console", "reference", "--store", store, "--out", str(out)]) == 2
        assert capsys.readouterr().err == (
            f"console reference: {out} exists; pass --force to replace it\n")
    assert out.read_text() == "the ranges the kiosks use now\n"
    assert main(["console", "reference", "--store", url, "--out", str(out), "--force"]) == 0
    assert "60-69" in load_references(out)


def test_a_broken_reference_file_is_refused_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "reference.json"
    broken.write_text('{"bands": {"40-49": {"kime_score": {"mean": "x"}}}}')
    with pytest.raises(ValueError, match=r"reference\.json: not a reference-range file"):
        load_references(broken)


def test_a_small_bands_wide_interval_does_not_put_the_axis_below_zero() -> None:
    two = band_stats("30-39", 2, 100 + 188, 100**2 + 188**2)  # pores: CI from below 0
    assert two.low < 0
    one = band_stats("20-29", 1, 65, 65**2)
    view = FeatureView("pore_count", [one, two], Correlation(math.nan, math.nan, math.nan,
                                                             math.nan, 3))
    svg = svg_plot(view)
    labels = re.findall(r'font-size="10">([-\d.e+]+)</text>', svg)
    assert labels[1] == "0"  # the axis' lower label: no negative pore count
    bottom = 10 + 200 - 50  # top + plot height
    ys = [float(y) for y in re.findall(r'y[12]="([\d.-]+)"', svg)]
    assert max(ys) == pytest.approx(bottom)  # the whisker stops at the axis


def test_a_band_without_results_keeps_its_place_on_the_axis(tmp_path: Path) -> None:
    """The plot left bands without results off its axis and spaced the rest evenly: results
    aged 20-29 and 50-59 stood side by side, as if nobody were missing between them."""
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        results = [make_result(i, "s", "d", ("20-29", "50-59")[i % 2]) for i in range(1, 9)]
        now = iso_utc(datetime.now(UTC))
        store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                         for r in results]), 10)
        views = {v.key: v for v in feature_views(store.band_sums(REPORT_FEATURES))}
    finally:
        store.close()
    svg = svg_plot(views["pore_count"])  # measured in every result
    labels = re.findall(r'font-size="10" text-anchor="middle">([^<]+)</text>', svg)
    counts = re.findall(r'font-size="9" text-anchor="middle">n=(\d+)</text>', svg)
    assert labels == ["20-29", "30-39", "40-49", "50-59"]
    assert counts == ["4", "0", "0", "4"]
    points = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    label_x = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="178"', svg)]
    assert points == [label_x[0], label_x[3]]  # each mean above its own band
    gaps = np.diff(label_x)
    assert gaps == pytest.approx([gaps[0]] * 3)  # a band's width whether it holds results or not


def test_figures_never_reused_are_computed_once_per_request(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """console.cohort_cache_s: 0 (allowed) made a request that found no figures yet (one that
    came during the start-up warm-up) compute them again and again, stale at once, until
    RecursionError: a 500 after about 20 s of CPU."""
    computed: list[int] = []
    band_sums = store.band_sums

    def counted(features: Any) -> Any:
        computed.append(1)
        return band_sums(features)

    monkeypatch.setattr(store, "band_sums", counted)
    cache = CohortCache(0.0)
    views = cache.get(store).views  # none computed yet; on main: RecursionError
    assert len(computed) == 1
    assert {v.key for v in views} == set(REPORT_FEATURES)
    cache.get(store)  # stale at once, no pool to refresh in the background: computed here
    assert len(computed) == 2


def test_a_demo_s_three_results_show_r_without_an_interval_not_nan(tmp_path: Path) -> None:
    """The default demo stores 3 results with an age band (one customer declines): too few
    for a Fisher-z interval, and the cohort page showed each r as ``-0.67 [+nan, +nan]``."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    store = open_store(url)
    results = [make_result(i, "demo", "kiosk-demo-1", band)
               for i, band in enumerate(("20-29", "30-39", "30-39"), start=1)]
    store.write_batch(Batch(results=[result_row(r, iso_utc(r.captured_at), r.to_json().decode())
                                     for r in results]), 10)
    add_user(store, "alice", "operator", PASSWORD)
    store.close()
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0)
    pool = StorePool(url, size=1)
    thread = ConsoleThread(config, pool, tmp_path / "pathology")
    thread.start()
    try:
        assert thread.wait_started(), "console did not start"
        console = Console(f"http://127.0.0.1:{config.port}", "", "", url, tmp_path)
        cookie, _ = login_cookie(console)
        status, _, body = get_with(console, "/cohort", cookie)
    finally:
        thread.stop()
        pool.close()
    assert status == 200
    table = re.search(r'<table id="correlations".*?</table>', body.decode(), re.S)
    assert table
    assert "nan" not in table.group(0).lower()
    kime = re.search(r"<td>kime_score</td>\s*<td>([^<]*)</td>", table.group(0))
    assert kime
    assert re.fullmatch(r"[+-]\d\.\d\d \(n=3, too few for a 95% CI\)", kime.group(1))
