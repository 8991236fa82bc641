"""A Ctrl-C (or SIGTERM) while `pathology serve` or `pathology run` is still starting ends it
as one a moment later does: serve logs its stop message and exits 0, run exits 130, and
neither prints a traceback from the middle of an import."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.signal_helpers import started_and_signalled


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "slides").mkdir()
    data = {"mqtt": {"host": "127.0.0.1", "port": 1, "topic_prefix": "patho-signals"},
            "state_dir": str(tmp_path / "state"),
            "pathology": {"client_id": "patho-signals", "slide_roots": [str(tmp_path / "slides")],
                          "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("module", "signame"), [
    ("appliance.config", "SIGINT"),  # while its config models load
    ("appliance.pathology.service_main", "SIGINT"),  # while serve loads the server
    ("appliance.pathology.service_main", "SIGTERM"),
    ("appliance.pathology.service_main", "SIGHUP"),  # its terminal closed: a kill, no word
])
def test_a_stop_signal_while_serve_starts_is_its_clean_stop(
    config_file: Path, module: str, signame: str,
) -> None:
    """It was a KeyboardInterrupt traceback (inside pydantic, say; exit -2), or exit 130 without
    the stop message (SIGTERM: killed by it); now the server stops as it does once serving,
    before it opens its store or reaches the broker (whose port here is closed)."""
    code, err = started_and_signalled(module, signame, "pathology", "serve", "--config",
                                       str(config_file))
    assert (code, "Traceback" in err) == (0, False), err
    assert "store" not in err
    assert not (config_file.parent / "state").exists()
    said = err.splitlines()
    assert len(said) == 1, err
    # the server's own logger, as its start line: it was the back office's (copied from there)
    assert said[0].endswith(
        f"INFO appliance.pathology.service_main: received {signame}; stopping"), err


def test_a_ctrl_c_while_run_starts_exits_130_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "slides").mkdir()
    code, err = started_and_signalled("appliance.synthetic.arguments", "SIGINT", "pathology", "run",
                                       str(tmp_path / "slides"), "--out", str(tmp_path / "out"))
    assert (code, err) == (130, "")
    assert not (tmp_path / "out").exists()
