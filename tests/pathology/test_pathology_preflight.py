"""`appliance pathology serve` refuses, at start and with exit 2, what `config check` refuses:
a slide root that is no folder, a missing model file, a results folder it cannot write. Started
by hand (or by the unit, which runs no separate check) it served with them before, failing
every job or every heatmap."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.config import ConfigError, config_from_mapping
from appliance.pathology.service_main import run_server
from appliance.pathology.service_metrics import ServiceMetrics
from appliance.transport.broker import free_port

# what stands in the way -> (the results folder the config names, what both refuse it with)
CASES = {
    "no slide root": ("results", "pathology.slide_roots: {tmp}/slides: not a folder"),
    "a file for results": ("file", "pathology.results_dir: {tmp}/file: not a folder"),
    "a file above results": ("file/results",
                             "pathology.results_dir: {tmp}/file/results: {tmp}/file is no folder"),
}


def _config(tmp_path: Path, results: str) -> Any:
    settings = {"slide_roots": [str(tmp_path / "slides")],
                "results_dir": str(tmp_path / results)}
    return config_from_mapping(
        {"pathology": settings, "state_dir": str(tmp_path / "state"),
         "mqtt": {"port": 1}},  # nothing listens: a server that got as far would not connect
        "pathology.yaml", environ={})


@pytest.mark.parametrize("case", CASES)
def test_the_server_refuses_at_start_what_config_check_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    results, said = CASES[case]
    if case != "no slide root":
        (tmp_path / "slides").mkdir()
        (tmp_path / "file").write_text("not a folder")
    expected = said.format(tmp=tmp_path)
    stop = threading.Event()
    timer = threading.Timer(10, stop.set)  # a server that started anyway stops, and fails below
    timer.start()
    try:
        with caplog.at_level(logging.ERROR):
            assert run_server(_config(tmp_path, results), stop) == 2
    finally:
        timer.cancel()
    assert expected in caplog.text
    assert not (tmp_path / "state").exists()  # no store was opened
    path = tmp_path / "pathology.yaml"
    path.write_text(f"pathology:\n  slide_roots: [{tmp_path / 'slides'}]\n"
                    f"  results_dir: {tmp_path / results}\n")
    assert main(["config", "check", str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_a_config_without_slide_roots_is_refused_saying_where_they_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The repository's config.yaml (a kiosk's) has no pathology section: the refusal said to
    'name the folders the server may read slides from', not where; the way it names works."""
    kiosk = config_from_mapping({"state_dir": str(tmp_path / "state")}, "config.yaml", environ={})
    with caplog.at_level(logging.ERROR):
        assert run_server(kiosk, threading.Event()) == 2
    assert ("name the folders the server may read slides from in the config's pathology "
            "section (pathology: {slide_roots: [/srv/slides]}; README.md, Pathology server, has "
            "an example) or in APPLIANCE__PATHOLOGY__SLIDE_ROOTS='[/srv/slides]'") in caplog.text
    assert not (tmp_path / "state").exists()
    told = config_from_mapping({}, "config.yaml",
                               environ={"APPLIANCE__PATHOLOGY__SLIDE_ROOTS": "[/srv/slides]"})
    assert told.pathology.slide_roots == ["/srv/slides"]


def test_metrics_listen_on_loopback_unless_told_and_a_taken_port_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # /metrics has no login: it listened on every interface (prometheus-client's default)
    # and a port already taken ended the server's start with a traceback
    first = ServiceMetrics(max_batch=8)
    port = free_port()
    first.serve(port)
    try:
        assert first.bound_address() == ("127.0.0.1", port)
        taken = ServiceMetrics(max_batch=8)
        with caplog.at_level(logging.ERROR):
            taken.serve(port)
        assert taken.bound_address() is None
        assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    finally:
        first.close()
    with pytest.raises(ConfigError, match=r"metrics_bind.*no IP address"):
        config_from_mapping({"pathology": {"metrics_bind": "everywhere"}}, "x.yaml", environ={})
