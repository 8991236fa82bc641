"""A Ctrl-C (or SIGTERM) while `appliance edge` is still starting ends it as one a moment later
does: the daemon stops in order, exit 0, saying so, and prints no traceback from the middle of
an import; a stop that comes while the daemon is built leaves its outbox whole and empty."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from appliance.transport.broker import free_port
from tests.signal_helpers import started_and_signalled

STOPPED = "stop requested while starting; exiting before the daemon ran"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = {"device": {"id": "kiosk-signals", "site": "lab"},
            "camera": {"source": "synthetic"},
            "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "smalledge-sig"},
            "state_dir": str(tmp_path / "state")}
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("module", "signame"), [
    ("appliance.config", "SIGINT"),  # while its config models load
    ("appliance.config", "SIGTERM"),
    ("appliance.edge.daemon", "SIGTERM"),  # while the daemon's modules load
    ("appliance.edge.daemon", "SIGINT"),
])
def test_a_stop_signal_while_edge_starts_ends_it_before_it_runs(
    config_file: Path, module: str, signame: str,
) -> None:
    """It was exit 130 (SIGINT) or a kill by SIGTERM, without a word in the journal; now the
    daemon exits 0 saying why, before it takes its state folder or reaches the broker."""
    code, err = started_and_signalled(module, signame, "edge", "--config", str(config_file))
    assert (code, "Traceback" in err) == (0, False), err
    assert STOPPED in err
    assert not (config_file.parent / "state").exists()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_while_the_daemon_is_built_leaves_its_outbox_whole(
    config_file: Path, signame: str,
) -> None:
    """It was a KeyboardInterrupt (exit 130) or a kill from inside the model's loading; now the
    build finishes, the outbox it opened is closed as it is, and the daemon exits 0."""
    code, err = started_and_signalled("appliance.inference.classifier", signame, "edge",
                                       "--config", str(config_file))
    assert (code, "Traceback" in err) == (0, False), err
    assert STOPPED in err
    assert "edge daemon running" not in err
    with sqlite3.connect(config_file.parent / "state" / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)
