"""A --config named beside --store is read, and refused where it cannot be: the commands passed
over it (a missing or broken file) in silence, so a typo in its name went unnoticed. --store
alone still needs no config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.backoffice import demo
from appliance.backoffice.store import open_store
from appliance.cli import main

COMMANDS = [["fleet"], ["results", "query"], ["results", "export", "--format", "jsonl"],
            ["results", "dead-letters"], ["results", "erasures"], ["report", "cohort", "--out",
                                                                   "report"],
            ["store", "migrate"], ["console", "user", "list"], ["console", "token", "list"],
            ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_config_named_beside_store_that_cannot_be_read_is_refused(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: 0)
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    open_store(url).close()
    assert main([*command, "--store", url, "--config", "missing.yaml"]) == 2  # on main: 0
    err = capsys.readouterr().err
    assert err.startswith(f"{' '.join(command[:3 if command[0] == 'console' else 2])}: "
                          "config error: missing.yaml: config file not found"), err
    (tmp_path / "broken.yaml").write_text("backoffice:\n  sesion_expiry_s: 60\n")
    assert main([*command, "--store", url, "--config", "broken.yaml"]) == 2
    assert "backoffice.sesion_expiry_s: unknown key" in capsys.readouterr().err
    (tmp_path / "sound.yaml").write_text("state_dir: ./kept\n")
    assert main([*command, "--store", url, "--config", "sound.yaml"]) in (0, 1)  # read, then run
    assert "config error" not in capsys.readouterr().err
    assert main([*command, "--store", url]) in (0, 1)  # --store alone: no config needed
