"""``appliance console``, having served every page, holds no image, array or statistics library,
nor, on a SQLite store, PostgreSQL's driver.

The console imported OpenCV through the validated-range page (skin/validity.py read two
constants of skin/pores.py), NumPy through the age-band helpers of backoffice/cohort.py and
SciPy's ``stats`` for the cohort page's t quantile and p-value: ~107 of a long-running
server's ~200 MiB, for nothing it draws (docs/experiments/README.md "soak2", "consolemem").
The console is run here as an operator finds it, in a process of its own, and asked for every
page, a result, a picture, the CSV export and the API.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
from scipy import stats

from appliance.backoffice import student_t
from appliance.backoffice.store import open_store
from appliance.console.auth import add_user, create_token
from appliance.transport.broker import free_port, port_open
from tests.console.console_helpers import PASSWORD, open_request, seed, seed_pathology
from tests.modules_loaded import MODULES_PRINTED_AT_EXIT

REPO = Path(__file__).resolve().parents[2]
# psycopg: the store here is SQLite (~10 MiB and 83 modules it does not use)
NOT_SERVED_BY_THE_CONSOLE = ("cv2", "scipy", "numpy", "torch", "onnxruntime", "matplotlib", "paho",
                             "psycopg", "appliance.skin.pores", "appliance.skin.analysis")
PAGES = ("/fleet", "/results", "/results?grade=fine", "/results.csv", "/cohort",
         "/dead-letters", "/account", "/tokens", "/validated-range", "/rollouts",
         "/rollouts/r0llout1", "/pathology", "/pathology/job-1",
         "/pathology/job-1/slides/0/heatmap", "/fleet/tokyo/kiosk-1/models", "/docs",
         "/openapi.json")
API = ("/api/v1/fleet", "/api/v1/results?limit=5", "/api/v1/cohort", "/api/v1/rollouts",
       "/api/v1/pathology/jobs", "/api/v1/pathology/jobs/job-1",
       "/api/v1/fleet/tokyo/kiosk-1/model-reports")
CSRF = re.compile(rb'name="csrf" value="([^"]+)"')


def _visit(base: str, token: str) -> dict[str, int]:
    """Log in through the form, read every page, a result, the API, and log out: statuses."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(base + "/login", timeout=30) as answer:
        csrf = CSRF.search(answer.read())
    assert csrf
    form = {"csrf": csrf.group(1).decode(), "user": "alice", "password": PASSWORD,
            "next": "/fleet"}
    with browser.open(base + "/login", urlencode(form).encode(), timeout=30) as answer:
        page = answer.read()  # /fleet, the login's redirect followed
    statuses = {path: _api(base, token, path)[0] for path in API}
    newest = json.loads(_api(base, token, "/api/v1/results?limit=1")[1])["results"][0]
    statuses["/api/v1/results/ID"] = _api(base, token,
                                          f"/api/v1/results/{newest['measurement_id']}")[0]
    for path in (*PAGES, f"/results/{newest['measurement_id']}"):
        with browser.open(base + path, timeout=30) as answer:
            statuses[path] = answer.status
            answer.read()
    csrf = CSRF.search(page)
    assert csrf
    with browser.open(base + "/logout", urlencode({"csrf": csrf.group(1).decode()}).encode(),
                      timeout=30) as answer:
        statuses["/logout"] = answer.status
    return statuses


def _api(base: str, token: str, path: str) -> tuple[int, bytes]:
    status, _, body = open_request(urllib.request.Request(
        base + path, headers={"Authorization": f"Bearer {token}"}))
    return status, body


def _seeded_store(folder: Path) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'backoffice.sqlite3'}"
    store = open_store(url)
    seed(store)
    seed_pathology(url, folder / "pathology-results")
    add_user(store, "alice", "operator", PASSWORD)
    token = create_token(store, "alice").token
    store.close()
    return url, token


def test_a_console_that_served_every_page_loaded_no_image_or_statistics_library(
    tmp_path: Path,
) -> None:
    url, token = _seeded_store(tmp_path)
    port = free_port()
    (tmp_path / "backoffice.yaml").write_text(
        f"console:\n  port: {port}\npathology:\n  results_dir: pathology-results\n")
    server = subprocess.Popen(
        [sys.executable, "-c", MODULES_PRINTED_AT_EXIT, "console", "--config", "backoffice.yaml",
         "--store", url],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()
            time.sleep(0.1)
        statuses = _visit(f"http://127.0.0.1:{port}", token)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert set(statuses.values()) == {200}, statuses
    loaded = json.loads(err.splitlines()[-1])
    assert "appliance.console.cohortview" in loaded  # the cohort was drawn
    assert "appliance.skin.validity" in loaded  # and the validated range
    held = [name for name in NOT_SERVED_BY_THE_CONSOLE
            if any(module == name or module.startswith(f"{name}.") for module in loaded)]
    assert held == []


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 29, 30, 119, 1_000, 54_321, 1_000_000])
def test_the_t_quantiles_and_tails_the_cohort_page_uses_are_scipys(dof: int) -> None:
    """The page's band CIs and p-values, now without SciPy, as SciPy gave them (a million
    degrees of freedom loses digits to lgamma's differences: still 7, where the page shows 3)."""
    close = 1e-9 if dof <= 100_000 else 1e-7
    assert student_t.quantile(0.975, dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=1e-9)
    assert student_t.quantile(0.025, dof) == pytest.approx(stats.t.ppf(0.025, dof), rel=1e-9)
    for t in (0.0, 0.003, 0.4, 1.0, 1.96, 2.7, 6.0, 30.0, -0.8, -5.0):
        assert student_t.upper_tail(t, dof) == pytest.approx(stats.t.sf(t, dof), rel=close)
