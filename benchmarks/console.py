"""Console benchmark: p95 per page and per API call over 1,000,000 results in PostgreSQL; and
the kiosk screen's cost per camera frame and its preview rate on one core.

Prints ONE JSON object.
- ``console``: a throw-away PostgreSQL schema is filled server-side (``generate_series``) with
  ``--results`` results from 500 kiosks at 50 sites over a year (short payloads: the console
  reads the payload only on the one-result page), the console runs on it (uvicorn, store pool,
  the indexes of migration 3) and every page and API call is requested ``--repeat`` times one
  after another over HTTP with a login session or a bearer token. Figures: p50/p95/max ms.
  The fleet page shows 100 of the 500 kiosks (its first page); the API's fleet is timed whole
  and a page of 100 (``limit=100``). The results page counts the matching results (at most
  RESULTS_COUNTED), which the API does not: ``results_count`` times that count alone, in the
  store, for each results call's filter. The cohort figures are cached for
  ``console.cohort_cache_s``; their uncached cost (the grouped queries behind a cache miss)
  is timed separately.
- ``screen``: the callbacks the edge pipeline makes per frame (``offer_frame`` on the capture
  thread, ``on_gated`` on the analysis thread) timed on real 1280x960 frames; the JPEG encoding
  that happens on the preview stream's own thread; and the frames per second an MJPEG client
  receives, and how old each picture is on arrival (each camera frame carries a grey-level mark),
  while the whole process is pinned to one CPU core, with a 30 fps camera feeding it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "benchmark password"

FILL_SQL = """
INSERT INTO results (measurement_id, device_id, site, captured_at, received_at, software_version,
    quality_verdict, model_name, model_version, label, subject_id, age_band, {features}, payload,
    placed_at)
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(h, 14, 3) || '-a'
        || substr(h, 18, 3) || '-' || substr(h, 21, 12),
    'kiosk-' || (i % 500), 'site-' || (i % 500 / 10),
    to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    '0.1.0', 'ok', 'skin-texture-grade', '1.0.0', (ARRAY['fine','normal','coarse'])[1 + i % 3],
    CASE WHEN i % 10 < 3 THEN 'subj-' || (i % 100000) END,
    CASE WHEN i % 10 <> 9 THEN (ARRAY['10-19','20-29','30-39','40-49','50-59','60-69','70-79',
        '80+'])[1 + (i * 7) % 8] END,
    {values}, '{{"quality": {{"verdict": "ok"}}}}', to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
FROM (SELECT i, md5(i::text) AS h,
             timestamp '2026-01-01' + i * interval '31 seconds' AS t
      FROM generate_series(1, {count}) AS i) AS g
"""


def _fill(store: Any, count: int) -> float:
    from appliance.transport.payloads import FEATURE_KEYS

    values = ", ".join("(i % 97)" if k == "pore_count" else "50 + 30 * random()" if k ==
                       "kime_score" else "random()" for k in FEATURE_KEYS)
    started = time.perf_counter()
    sql = FILL_SQL.format(features=", ".join(FEATURE_KEYS), values=values, count=int(count))
    # The bulk fill of a throw-away schema goes around the store's API (one INSERT ... SELECT).
    connection = store._conn  # noqa: SLF001  (the store offers no bulk fill)
    connection.execute(sql)
    connection.execute(
        "INSERT INTO devices (site, device_id, state, last_seen, software_version, camera, "
        "outbox_depth) SELECT 'site-' || (d / 10), 'kiosk-' || d, 'online', "
        "'2026-12-01T00:00:00.000000Z', '0.1.0', 'online', d % 7 FROM generate_series(0, 499) d")
    connection.execute("ANALYZE")
    return time.perf_counter() - started


def _timed(call: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
            "max_ms": round(times[-1], 1)}


def _getter(url: str, headers: dict[str, str]) -> Any:
    def call() -> None:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            assert response.status == 200, url

    return call


def _login(base: str) -> str:
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    body = response.read().decode()
    cookie = response.getheader("set-cookie", "").split(";")[0]
    csrf = body.split('name="csrf" value="')[1].split('"')[0]
    conn.request("POST", "/login", urlencode({"csrf": csrf, "user": "bench", "password": PASSWORD}),
                 {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    response = conn.getresponse()
    response.read()
    return response.getheader("set-cookie", "").split(";")[0]


def _targets(store: Any, count: int) -> dict[str, str]:
    """Paths to time, with a real measurement id and a cursor halfway into the table."""
    from appliance.backoffice.queries import ResultFilter

    newest = store.page_results(("measurement_id", "placed_at"), ResultFilter(), None, 1)[0]
    deep = store.page_results(("placed_at", "measurement_id"), ResultFilter(), None,
                              count // 2)[-1]
    return {
        "results": "results?limit=50",
        "results_site": "results?site=site-7&limit=50",
        "results_device": "results?device=kiosk-42&limit=50",
        "results_grade_month": "results?grade=coarse&from=2026-06-01&to=2026-06-30&limit=50",
        "results_all_filters": "results?site=site-4&device=kiosk-42&grade=coarse"
                               "&from=2026-03-01&to=2026-09-30&limit=50",
        "results_page_halfway": f"results?limit=50&before={deep[0]}~{deep[1]}",
        "result_one": f"results/{newest[0]}",
    }


def bench_console(count: int, repeat: int) -> dict[str, Any]:
    """Fill PostgreSQL, serve the console on it and time every page and API call."""
    from appliance.backoffice.store import open_store
    from appliance.config import ConsoleConfig
    from appliance.console.auth import add_user, create_token
    from appliance.console.cohortview import feature_views, repeat_rows
    from appliance.console.db import StorePool
    from appliance.console.server import ConsoleThread
    from appliance.transport.broker import free_port

    schema = f"bench_console_{uuid.uuid4().hex[:8]}"
    store = open_store(PG_URL, pg_schema=schema)
    try:
        fill_s = _fill(store, count)
        add_user(store, "bench", "viewer", PASSWORD)
        token = create_token(store, "bench").token
        targets = _targets(store, count)
        settings = ConsoleConfig(port=free_port())
        pool = StorePool(PG_URL, pg_schema=schema)
        server = ConsoleThread(settings, pool)
        server.start()
        assert server.wait_started()
        base = f"http://127.0.0.1:{settings.port}"
        try:
            pages, api = _time_endpoints(base, targets, token, repeat)
        finally:
            server.stop()
            pool.close()
        uncached = _timed(lambda: (feature_views(store.band_sums(_features())),
                                   repeat_rows(store)), max(3, repeat // 10))
        counts = _count_costs(store, targets, repeat)
        return {"results": store.count_results(), "fill_s": round(fill_s, 1), "repeat": repeat,
                "pages": pages, "api": api, "results_count": counts,
                "cohort_uncached": uncached, "target_p95_ms": 200}
    finally:
        store.drop_postgres_schema(schema)
        store.close()


def _count_costs(store: Any, targets: dict[str, str], repeat: int) -> dict[str, Any]:
    """The results page's count of matching results (at most RESULTS_COUNTED) for the filter
    of each results call, alone in the store: what the page reads that the API does not."""
    from urllib.parse import parse_qsl

    from appliance.console.filters import parse_query
    from appliance.console.views import RESULTS_COUNTED

    costs: dict[str, Any] = {"counted_at_most": RESULTS_COUNTED}
    for name, path in targets.items():
        if path.startswith("results?"):
            where = parse_query(dict(parse_qsl(path.partition("?")[2]))).where
            costs[name] = {"shown": store.count_results_up_to(where, RESULTS_COUNTED).text(),
                           **_timed(lambda w=where: store.count_results_up_to(
                               w, RESULTS_COUNTED), repeat)}
    return costs


def _features() -> tuple[str, ...]:
    from appliance.backoffice.agebands import REPORT_FEATURES

    return REPORT_FEATURES


def _time_endpoints(base: str, targets: dict[str, str], token: str,
                    repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    cookie = {"Cookie": _login(base)}
    bearer = {"Authorization": f"Bearer {token}"}
    pages = {"fleet": _timed(_getter(f"{base}/fleet", cookie), repeat),
             "cohort_cached": _timed(_getter(f"{base}/cohort", cookie), repeat),
             "csv_one_device_one_month": _timed(_getter(
                 f"{base}/results.csv?device=kiosk-42&from=2026-06-01&to=2026-06-30", cookie),
                 repeat)}
    api = {"fleet": _timed(_getter(f"{base}/api/v1/fleet", bearer), repeat),
           "fleet_page_of_100": _timed(_getter(f"{base}/api/v1/fleet?limit=100", bearer),
                                       repeat),
           "cohort_cached": _timed(_getter(f"{base}/api/v1/cohort", bearer), repeat)}
    for name, path in targets.items():
        pages[name] = _timed(_getter(f"{base}/{path}", cookie), repeat)
        api[name] = _timed(_getter(f"{base}/api/v1/{path}", bearer), repeat)
    return pages, api


def bench_screen_callbacks(frames: int) -> dict[str, Any]:
    """What the kiosk screen adds per frame to the capture and analysis threads."""
    from appliance.capture.quality import QualityGate
    from appliance.capture.sources import Frame
    from appliance.config import ScreenConfig
    from appliance.edge.kiosk import KioskDisplay
    from appliance.synthetic.camera import textured_skin

    display = KioskDisplay(ScreenConfig(port=None), 5, Path("/tmp"))
    display.server = object()  # type: ignore[assignment]  # count offer() as if a page watched
    skin = textured_skin(1)
    rgb = [skin(i) for i in range(8)]
    gate = QualityGate()
    verdicts = [gate.assess(rgb[i % 8], rgb[(i - 1) % 8]) for i in range(8)]
    added, gate_ms = [], []
    for index in range(frames):
        frame = Frame(rgb[index % 8], index)
        started = time.perf_counter()
        gate.assess(frame.rgb)
        gated = time.perf_counter()
        display.offer_frame(frame)
        display.on_gated(verdicts[index % 8], index % 5, index % 5 == 4)
        added.append((time.perf_counter() - gated) * 1000)
        gate_ms.append((gated - started) * 1000)
    encode = _timed(lambda: display.preview.encode(rgb[0]), 50)
    return {"frame_px": [1280, 960], "added_per_frame_ms": {
                "mean": round(statistics.mean(added), 4),
                "p95": round(sorted(added)[int(len(added) * 0.95) - 1], 4)},
            "quality_gate_per_frame_ms_for_scale": round(statistics.median(gate_ms), 2),
            "preview_jpeg_encode_ms_on_stream_thread": encode, "target_added_ms": 5}


MARK_STEP = 5  # grey levels between frame marks: JPEG keeps a flat 64 px block within +-2


def bench_preview_one_core(seconds: float) -> dict[str, Any]:
    """MJPEG frames per second a client gets, and how old each picture is when it arrives,
    with the camera, the server and the client all pinned to one core."""
    from appliance.capture.sources import Frame
    from appliance.edge.screen_preview import PreviewFeed
    from appliance.edge.screen_server import ScreenServer
    from appliance.edge.screen_state import ScreenState
    from appliance.synthetic.camera import textured_skin

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    feed, stop = PreviewFeed(640), threading.Event()
    server = ScreenServer(0, ScreenState(5, 60, "en"), feed, Path("/tmp"), fps=15.0)
    threading.Thread(target=server.serve_forever, args=(0.25,), daemon=True).start()
    base = textured_skin(2)(0)
    offered: dict[int, float] = {}

    def camera() -> None:  # a 30 fps camera, like the Scalar microscope; each frame marked
        index = 0
        while not stop.wait(1 / 30):
            rgb = base.copy()
            rgb[:128, :128] = (index % 50) * MARK_STEP
            offered[index % 50] = time.perf_counter()
            feed.offer(Frame(rgb, index))
            index += 1

    threading.Thread(target=camera, daemon=True).start()
    ages = sorted(_read_mjpeg(server.server_port, seconds, offered))
    stop.set()
    server.stopping.set()
    server.shutdown()
    server.server_close()
    return {"cpu_cores": 1, "camera_fps": 30, "preview_fps_limit": 15,
            "received_fps": round(len(ages) / seconds, 1), "seconds": seconds,
            "picture_age_ms": {"p50": round(statistics.median(ages), 1),
                               "p95": round(ages[int(len(ages) * 0.95) - 1], 1)}}


def _read_mjpeg(port: int, seconds: float, offered: dict[int, float]) -> list[float]:
    """How old (ms since the camera offered it) each JPEG received within ``seconds`` is."""
    import cv2
    import numpy as np

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/preview.mjpg", headers={"Host": f"127.0.0.1:{port}"})
    response = conn.getresponse()
    buffer, arrivals = b"", []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        buffer += response.read1(65536)
        while (end := buffer.find(b"\xff\xd9")) >= 0:
            start = buffer.find(b"\xff\xd8")
            at = time.perf_counter()
            picture = cv2.imdecode(np.frombuffer(buffer[start:end + 2], np.uint8),
                                   cv2.IMREAD_GRAYSCALE)
            mark = round(float(picture[8:56, 8:56].mean()) / MARK_STEP)
            arrivals.append((at - offered[mark]) * 1000)  # marks repeat only every 1.7 s
            buffer = buffer[end + 2:]
    conn.close()
    return arrivals


def main() -> None:
    """Run both parts and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--screen-seconds", type=float, default=5.0)
    args = parser.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "load_before": load}
    out["console"] = bench_console(args.results, args.repeat)
    out["screen"] = bench_screen_callbacks(600)
    out["screen"]["preview_one_core"] = bench_preview_one_core(args.screen_seconds)
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
