"""`appliance synth he --workers N` ends at once when a worker is killed or a stop signal comes:
the slides being painted are dropped with their hidden temporaries, not finished (the cohort
has no labels.csv yet, and the same command paints it whole again)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.synthetic import he
from tests.pool_helpers import (
    REPO,
    ctrl_c_when,
    painting_for_a_minute,
    pool_workers,
    when_two_paint,
)

COHORT = ["synth", "he", "--patients", "40", "--seed", "0", "--workers", "2", "--quiet"]


def _exit_code(arguments: list[str]) -> int:
    """``appliance ARGUMENTS``' exit code, SIGTERM's included (main raises its SystemExit)."""
    try:
        return main(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else -1


@pytest.mark.slow  # starts two worker processes (spawn), one killed with SIGKILL
def test_a_worker_killed_ends_the_cohort_without_the_slide_the_other_paints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The pool ends the other workers with SIGTERM; a forked worker had the command's handler
    # for it, caught the exception it raised and painted its next slide whole before it ended
    # (the command took 6-9 s to say a worker died; a minute with this slide).
    # It said 'a worker process ended abruptly (killed, or out of memory)': which one?
    monkeypatch.setattr(he, "_write_slide", painting_for_a_minute)
    killed: list[int] = []

    def kill_one(pids: list[int]) -> None:
        killed.append(pids[0])
        os.kill(pids[0], signal.SIGKILL)

    given_up = when_two_paint(tmp_path, kill_one)
    out = tmp_path / "cohort"
    try:
        code = _exit_code([*COHORT, "--out", str(out)])
    finally:
        given_up.set()
    assert code == 1
    assert capsys.readouterr().err == (
        f"synth he: worker process {killed[0]} was killed by SIGKILL (kill -9, "
        f"or out of memory) with 0 of {len(he.cohort_specs(40, 0))} slides painted in {out} and "
        "no labels.csv, which a pathology run needs; the same command again paints the whole "
        "cohort\n")
    assert sorted(out.iterdir()) == []  # no slide, no hidden temporary, no labels.csv


@pytest.mark.slow  # starts two worker processes (spawn)
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_the_cohort_without_the_slides_being_painted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    signum: int, exit_code: int,
) -> None:
    # The command waited for its workers to finish the slides they painted and those queued
    # to them (Ctrl-C took 20 s at load 10, three slides painted that had not begun), though
    # the stopped cohort is painted whole again (a minute and more with this slide).
    monkeypatch.setattr(he, "_write_slide", painting_for_a_minute)
    given_up = when_two_paint(tmp_path, lambda pids: os.kill(os.getpid(), signum))
    out = tmp_path / "cohort"
    try:
        code = _exit_code([*COHORT, "--out", str(out)])
    finally:
        given_up.set()
    assert code == exit_code
    assert capsys.readouterr().err.startswith(
        f"synth he: stopped with 0 of {len(he.cohort_specs(40, 0))} slides painted")
    assert sorted(out.iterdir()) == []


@pytest.mark.slow  # a real process group and its workers, one slide partly painted
def test_ctrl_c_with_a_worker_idle_is_no_traceback(tmp_path: Path) -> None:
    # One slide, two workers: the idle one, waiting for a slide, got Ctrl-C too and printed
    # a traceback of its own (a worker painting caught it and went on to its next slide).
    out = tmp_path / "cohort"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert len(he.cohort_specs(1, 0)) == 1
    code, err = ctrl_c_when(  # then painting (a surgical slide takes seconds)
        [sys.executable, "-m", "appliance", "synth", "he", "--out", str(out), "--patients", "1",
         "--seed", "0", "--workers", "2", "--quiet"],
        env, lambda pid: bool(pool_workers(pid)), settle_s=1.0)
    assert code == 130, err
    # the one slide may be done before the Ctrl-C lands (a fast machine paints it in about a
    # second): either way one line, no traceback, and the slides said are the slides there
    painted = sorted(out.iterdir()) if out.exists() else []
    again = "with --force" if painted else "again"  # a painted slide is refused without it
    assert err == (f"synth he: stopped with {len(painted)} of 1 slides painted in {out} "
                   "and no labels.csv, which a pathology run needs; the same command "
                   f"{again} paints the whole cohort\n")
