"""A Ctrl-C (or SIGTERM) while `appliance backoffice` or `appliance demo` is still starting ends
it as one a moment later does: the worker logs its stop message and exits 0, the demo says it
was stopped and exits 130; neither prints a traceback from an import, opens a store, or starts
a broker."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

from appliance.transport.broker import free_port
from tests.signal_helpers import started_and_signalled


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = {"mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "smalledge-sig"},
            "state_dir": str(tmp_path / "state")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("module", "signame"), [
    ("appliance.config", "SIGINT"),  # while its config models load
    ("appliance.config", "SIGTERM"),
    ("appliance.backoffice.service", "SIGTERM"),  # while the worker's modules load
    ("appliance.backoffice.ingest", "SIGINT"),
    ("appliance.backoffice.service", "SIGHUP"),  # its terminal closed: a kill where it stood
])
def test_a_stop_signal_while_the_backoffice_starts_is_its_clean_stop(
    config_file: Path, module: str, signame: str,
) -> None:
    """It was exit 130 (SIGINT) or 143 or a kill (SIGTERM) without the stop message."""
    code, err = started_and_signalled(module, signame, "backoffice", "--config",
                                       str(config_file))
    assert (code, "Traceback" in err) == (0, False), err
    assert f"received {signame}; stopping" in err
    assert "storing to" not in err
    assert not (config_file.parent / "state").exists()  # no lock taken, no store made


@pytest.mark.parametrize(("module", "signame"), [
    ("appliance.config", "SIGINT"),
    ("appliance.config", "SIGTERM"),
    ("appliance.backoffice.demo", "SIGTERM"),  # while the demo's modules load
    ("appliance.backoffice.demo", "SIGINT"),
    ("appliance.backoffice.demo", "SIGHUP"),  # its terminal closed: a kill where it stood
])
def test_a_stop_signal_while_the_demo_starts_stops_it_before_anything_runs(
    tmp_path: Path, module: str, signame: str,
) -> None:
    """It was exit 130 (SIGINT) or 143 or a kill (SIGTERM, SIGHUP), with nothing said; it now
    exits as a later stop does (130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP), saying
    so."""
    store = tmp_path / "demo.sqlite3"
    code, err = started_and_signalled(module, signame, "demo", "--devices", "1", "--count",
                                       "1", "--store", f"sqlite:///{store}")
    assert (code, "Traceback" in err) == (128 + signal.Signals[signame], False), err
    # the demo shows its back office's warnings only (its INFO "received ...; stopping" with `-v`)
    assert err.splitlines() == [
        "demo stopped (Ctrl-C, SIGTERM or SIGHUP) before it started anything"]
    # no store made; the demo's lock file beside it is taken before the demo's modules load
    # (a second demo is refused at once) and stays, as after every demo
    assert [p.name for p in tmp_path.iterdir()] in ([], ["demo.lock"])
