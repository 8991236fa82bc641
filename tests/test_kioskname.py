"""One reading of a kiosk's name on the command line (appliance/kioskname.py): ``results
query|export|dead-letters --device``, ``report cohort --device``, ``fleet resend --device``,
``models status --history``, and ``models deploy|rollback --devices`` (each kiosk of its list)
and ``--site`` refuse a value that is no DEVICE or SITE/DEVICE in one wording (the option, the
value, the part at fault and what an id may hold), exit 2, before any store or broker is
reached. Before, ``fleet resend`` took ``lab/a b`` and a 65-character id to the broker,
``models status --history`` read ``a/b/c`` as device ``c`` of site ``a/b`` from the store, and
``models deploy --devices 'lab/kiosk 1'`` made a new store and connected to the broker, then
called the value a kiosk with no status yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.transport.broker import free_port

RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"
LONG_ID = "k" * 65
EITHER = "a device id nor SITE/DEVICE"


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    """Each command that takes a kiosk, up to the option that names it; the store is a file
    that is not there and the broker a port nobody listens on, so a value let through would
    fail there, not be refused."""
    store = f"sqlite:///{tmp_path / 'none.sqlite3'}"
    config = tmp_path / "config.yaml"
    config.write_text(f"mqtt:\n  port: {free_port()}\n  topic_prefix: tidy2_x\n",
                      encoding="utf-8")
    return {
        "query": ["results", "query", "--store", store, "--device"],
        "export": ["results", "export", "--store", store, "--device"],
        "letters": ["results", "dead-letters", "--store", store, "--device"],
        "cohort": ["report", "cohort", "--store", store, "--out", str(tmp_path / "report"),
                   "--device"],
        "history": ["models", "status", "--store", store, "--history"],
        "resend": ["fleet", "resend", "--since", "2026-12-07T00:00:00Z", "--config",
                   str(config), "--device"],
        "deploy": ["models", "deploy", "skin-texture-grade", "1.0.0", "--repo",
                   str(tmp_path / "repo"), "--config", str(config), "--store", store,
                   "--devices"],
        "rollback": ["models", "rollback", "skin-texture-grade", "--to", "1.0.0", "--repo",
                     str(tmp_path / "repo"), "--config", str(config), "--store", store,
                     "--devices"],
    }


def _refusal(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> str:
    """The last line of argparse's refusal of ``arguments`` (exit 2, nothing printed)."""
    with pytest.raises(SystemExit) as refused:
        main(arguments)
    assert refused.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.rstrip("\n").splitlines()[-1]


@pytest.mark.parametrize("command", ["query", "export", "letters", "cohort", "history", "resend",
                                     "deploy", "rollback"])
@pytest.mark.parametrize(("value", "why"), [
    ("a/b/c", f"'b/c' is no device id: {RULE}"),
    ("/x", f"'' is no site id: {RULE}"),
    ("x/", f"'' is no device id: {RULE}"),
    ("lab/a b", f"'a b' is no device id: {RULE}"),
    ("a b/k1", f"'a b' is no site id: {RULE}"),
    (f"lab/{LONG_ID}", f"'{LONG_ID}' is no device id: {RULE}"),
    (f"{LONG_ID}/k1", f"'{LONG_ID}' is no site id: {RULE}"),
])
def test_a_kiosk_that_is_no_site_device_is_refused_in_one_wording_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str,
    why: str,
) -> None:
    arguments = [*_commands(tmp_path)[command], value]
    option = arguments[-2]
    allowed = "SITE/DEVICE" if command == "resend" else EITHER
    assert _refusal(capsys, arguments) == (
        f"appliance {' '.join(arguments[:2])}: error: argument {option}: {value!r}: not "
        f"{allowed} ({why})")
    assert not (tmp_path / "none.sqlite3").exists()


@pytest.mark.parametrize("command", ["query", "export", "letters", "cohort", "history",
                                     "deploy", "rollback"])
@pytest.mark.parametrize(("value", "why"), [
    ("a b", RULE),
    (LONG_ID, RULE),
])
def test_a_device_id_alone_that_is_none_is_refused_in_the_same_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str,
    why: str,
) -> None:
    arguments = [*_commands(tmp_path)[command], value]
    option = arguments[-2]
    assert _refusal(capsys, arguments).endswith(
        f"error: argument {option}: {value!r}: not {EITHER} ({why})")


@pytest.mark.parametrize("value", ["k1", "a b", LONG_ID])
def test_fleet_resend_refuses_a_device_without_its_site_saying_to_give_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
) -> None:
    arguments = [*_commands(tmp_path)["resend"], value]
    assert _refusal(capsys, arguments).endswith(
        f"error: argument --device: {value!r}: not SITE/DEVICE (no site: give it, e.g. "
        "lab/kiosk-1)")


@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_a_rollout_s_device_list_is_refused_at_its_first_kiosk_that_is_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
) -> None:
    arguments = [*_commands(tmp_path)[command], "k1, lab/k2,lab/a b,x/y/z"]
    assert _refusal(capsys, arguments).endswith(
        f"error: argument --devices: 'lab/a b': not {EITHER} ('a b' is no device id: {RULE})")
    assert not (tmp_path / "none.sqlite3").exists()


@pytest.mark.parametrize("command", ["deploy", "rollback"])
@pytest.mark.parametrize("value", ["lab ", "a/b", " lab", LONG_ID])
def test_a_rollout_s_site_that_is_none_is_refused_as_the_results_commands_refuse_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str,
) -> None:
    arguments = [*_commands(tmp_path)[command][:-1], "--site", value]
    assert _refusal(capsys, arguments).endswith(
        f"error: argument --site: {value!r}: not a site id ({RULE})")
    assert not (tmp_path / "none.sqlite3").exists()


@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_a_rollout_s_device_list_of_commas_alone_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
) -> None:
    arguments = [*_commands(tmp_path)[command], " , "]
    assert _refusal(capsys, arguments).endswith(
        "error: argument --devices: ' , ' names no device; name them as comma-separated DEVICE "
        "or SITE/DEVICE")
