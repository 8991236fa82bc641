"""A repository whose settings.json was damaged or edited by hand: each command says which file
and what is wrong, exit 2, and signs nothing (it was a traceback, or a signing that crashed
halfway on an expiry that is no number)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.updates.operations import init_repository
from appliance.updates.testing import linear_model

DAMAGED = {
    "not JSON": (b"{bad", "not readable as JSON (Expecting property name"),
    "not UTF-8": (b"\xff", "not readable as JSON ('utf-8' codec can't decode"),
    "no expiry_s": (b"{}", "no expiry_s object in it; put back the file `appliance models repo "
                           "init` wrote"),
    "a list": (b"[]", "no expiry_s object in it"),
    "an expiry in words": (b'{"expiry_s": {"timestamp": "1 day"}}',
                           "expiry_s 'timestamp': '1 day'; each of root, targets, snapshot, "
                           "timestamp, fleet takes whole seconds, more than 0"),
    "an unknown role": (b'{"expiry_s": {"mirror": 60}}', "expiry_s 'mirror': 60;"),
    "a negative expiry": (b'{"expiry_s": {"snapshot": -5}}', "expiry_s 'snapshot': -5;"),
    # on main: RecursionError out of every command, a traceback
    "nested too deeply": (b"[" * 5000, "not readable as JSON (JSON nested too deeply"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_settings_file_is_named_by_every_command_and_nothing_is_signed(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, said = DAMAGED[damage]
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.0.0")
    settings = repo.dir / "settings.json"
    settings.write_bytes(content)
    before = sorted(path.name for path in repo.metadata_dir.iterdir())
    commands = {
        "models repo refresh": ["models", "repo", "refresh", str(repo.dir)],
        "models release": ["models", "release", str(model), "--repo", str(repo.dir),
                           "--version", "1.0.0"],
        "models status": ["models", "status", "--repo", str(repo.dir)],
    }
    for shown, command in commands.items():
        assert main(command) == 2, shown
        assert capsys.readouterr().err.startswith(f"{shown}: {settings}: {said}")
    assert sorted(path.name for path in repo.metadata_dir.iterdir()) == before
