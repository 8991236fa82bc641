"""What the ``appliance models`` commands print of names given on the command line or read from
files (a model's own metadata, a folder's name) reaches the operator's terminal escaped: an
escape sequence there must not rewrite the screen or its title."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.shipped import SKIN_SELF_TEST, shipped_path
from appliance.updates.operations import init_repository
from appliance.updates.testing import linear_model

HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202e"
RAW = {"\x1b", "\x07", "\u202e"}


def _printed(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_models_commands_escape_names_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = init_repository(tmp_path / "repo")
    capsys.readouterr()
    missing = str(tmp_path / f"m{HOSTILE}.onnx")
    for command in (["release", missing, "--repo", str(repo.dir), "--version", "1.0.0"],
                    ["show", missing],
                    ["evaluate", missing, "--data", str(shipped_path(SKIN_SELF_TEST))],
                    ["repo", "init", str(tmp_path / "new"), "--keys", f"root=1{HOSTILE}"],
                    ["repo", "refresh", str(tmp_path / f"gone{HOSTILE}")],
                    ["status", "--repo", str(tmp_path / f"typo{HOSTILE}")]):
        assert main(["models", *command]) == 2, command
        printed = _printed(capsys)
        assert "\\x1b]0;owned\\u0007\\x1b[2J\\u202e" in printed, command
        assert not set(printed) & RAW, command


def test_models_evaluate_refuses_a_model_whose_own_name_no_result_can_carry_naming_it_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The payload contract takes no control character in a model's name (payloads.Drawn), so
    no kiosk could send a grade of it: refused at load, its name shown escaped."""
    model = linear_model(tmp_path / "m.onnx", "1.0.0", name=f"grader{HOSTILE}")
    assert main(["models", "evaluate", str(model), "--data", str(shipped_path(SKIN_SELF_TEST)),
                 "--split", "all"]) == 2
    printed = _printed(capsys)
    assert ("metadata 'name' ('grader\\x1b]0;owned\\x07\\x1b[2J\\u202e') cannot be sent in a "
            "result: Value error, holds \\x1b at character 7") in printed
    assert not set(printed) & RAW


@pytest.mark.broker
def test_models_deploy_escapes_the_device_names_it_refuses(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in (("HOST", mqtt_broker.host), ("PORT", str(mqtt_broker.port)),
                        ("TOPIC_PREFIX", topic_prefix)):
        monkeypatch.setenv(f"APPLIANCE__MQTT__{name}", value)
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    capsys.readouterr()
    # no device id: refused as its option's value, before the broker or a store (kioskname.py)
    with pytest.raises(SystemExit) as refused:
        main(["models", "deploy", "skin-texture-grade", "1.0.0", "--repo", str(repo.dir),
              "--devices", f"k1{HOSTILE}", "--store", f"sqlite:///{tmp_path / 'store.sqlite3'}"])
    assert refused.value.code == 2
    printed = _printed(capsys)
    assert "argument --devices: 'k1\\x1b]0;owned\\x07\\x1b[2J\\u202e': not a device id" in printed
    assert not set(printed) & RAW
    # a well-formed id that no kiosk has: refused by the deploy, named, as before
    assert main(["models", "deploy", "skin-texture-grade", "1.0.0", "--repo", str(repo.dir),
                 "--devices", "k1,k2", "--store",
                 f"sqlite:///{tmp_path / 'store.sqlite3'}"]) == 2
    assert "unknown device(s) k1, k2: no status from them yet" in _printed(capsys)


def test_an_argument_the_models_commands_do_not_know_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse quoted it raw in "unrecognized arguments: ..." (and in the subcommands'
    parsers, which it makes of the same class)."""
    for command in (["status", "--repo", str(tmp_path), f"x{HOSTILE}"],
                    ["repo", "refresh", str(tmp_path), f"x{HOSTILE}"]):
        with pytest.raises(SystemExit) as stopped:
            main(["models", *command])
        assert stopped.value.code == 2
        printed = _printed(capsys)
        assert "unrecognized arguments: x\\x1b]0;owned\\u0007\\x1b[2J\\u202e" in printed
        assert not set(printed) & RAW


@pytest.mark.broker
def test_models_status_shows_a_kiosk_s_reason_with_every_invisible_character_escaped(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model state's reason is a kiosk's free text (it may quote a model's error), taken as
    sent: a word joiner or a tag in it read as nothing on the operator's terminal."""
    from appliance.synthetic import fleet
    from appliance.transport.payloads import ModelInfo, ModelState
    from appliance.transport.topics import device_topic

    monkeypatch.chdir(tmp_path)
    for name, value in (("HOST", mqtt_broker.host), ("PORT", str(mqtt_broker.port)),
                        ("TOPIC_PREFIX", topic_prefix)):
        monkeypatch.setenv(f"APPLIANCE__MQTT__{name}", value)
    repo = init_repository(tmp_path / "repo")
    hidden = "\u2060\U000e0041\u3164\u202e"
    state = ModelState(device_id="k1", site="lab", state="rejected", at=datetime.now(UTC),
                       model=ModelInfo(name="skin-texture-grade", version="1.0.0"),
                       reason=f"self-test failed{hidden}{HOSTILE}")
    fleet.publish_messages(mqtt_broker.host, mqtt_broker.port,
                           [(device_topic(topic_prefix, "lab", "k1", "model/state"),
                             state.to_json())], retain=True)
    capsys.readouterr()
    assert main(["models", "status", "--repo", str(repo.dir), "--all-devices"]) == 0
    printed = _printed(capsys)
    assert "self-test failed\\u2060\\U000e0041\\u3164\\u202e\\x1b]0;owned" in printed
    assert not set(printed) & (RAW | set(hidden))
