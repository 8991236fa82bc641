"""The demo and a broken ./config.yaml: a kept demo refuses it (exit 2, naming the file and
the line or key), a throw-away demo, which reads no config, runs and says it passed over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.backoffice import demo
from appliance.cli import main

BROKEN = {
    "broken YAML": ("store:\n  url: [sqlite:///x\n", "config.yaml: broken YAML at line"),
    "unknown key": ("store:\n  urll: sqlite:///x\n", "store.urll: unknown key"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_throwaway_demo_says_it_ignores_a_broken_config_a_kept_one_refuses_it(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`demo --throwaway` passed over a broken ./config.yaml without a word, and the next
    command the user ran (`appliance fleet`) refused it."""
    text, named = BROKEN[kind]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(text)
    calls: list[str | None] = []

    def record(*args: object, store_url: str | None = None, **kwargs: object) -> int:
        calls.append(store_url)
        return 0

    monkeypatch.setattr(demo, "run_demo", record)
    assert main(["demo"]) == 2
    refused = capsys.readouterr().err
    assert refused.startswith("demo: config error: ")
    assert named in refused
    assert calls == []  # nothing started
    assert main(["demo", "--throwaway"]) == 0
    warned = capsys.readouterr().err
    assert warned.startswith("demo: warning: the config is ignored, as --throwaway reads none; "
                             "the commands that read it refuse it: ")  # on main: ''
    assert named in warned
    assert calls == [None]  # it ran, on its temporary store


def test_a_throwaway_demo_beside_a_sound_config_says_nothing_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("state_dir: ./kept\n")
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: 0)
    assert main(["demo", "--throwaway"]) == 0
    assert capsys.readouterr().err == ""
