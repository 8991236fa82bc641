"""`appliance models skin-table --workers N` ends at once when a stop signal comes or a worker is
killed: the rows being drawn are not waited for (the table is written only whole), it says how
many frames it had drawn and names a killed worker, and an idle worker prints no traceback."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.modelbuild import grades
from tests.pool_helpers import (
    DRAWN,
    PAINTING,
    REPO,
    ROWS_NOTED,
    TAKEN,
    ctrl_c_when,
    drawing_for_a_minute,
    dying_on_the_first_row,
    last_row_after_the_first_is_taken,
    pool_workers,
    when_two_paint,
)

TABLE = ["models", "skin-table", "--rows", "6", "--workers", "2", "--quiet", "--force"]
LOST = ("before the table was written: nothing kept; the earlier {out} is as it was; the same "
        "command again draws them all")
WITH_THE_FIRST_ROW_FOR_A_MINUTE = """
import sys
from appliance.cli import main
from appliance.modelbuild import grades
from tests.pool_helpers import first_row_for_a_minute
grades.frame_row = first_row_for_a_minute
raise SystemExit(main(sys.argv[1:]))
"""


def _exit_code(arguments: list[str]) -> int:
    """``appliance ARGUMENTS``' exit code, SIGTERM's included (main raises its SystemExit)."""
    try:
        return main(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else -1


def _noting_rows(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the row hooks note in (the workers find it in their environment)."""
    (folder / DRAWN).mkdir()
    monkeypatch.setenv(ROWS_NOTED, str(folder))
    out = folder / "table.csv"
    out.write_text("the earlier table\n")
    return out


@pytest.mark.slow  # starts two worker processes (spawn)
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_the_table_without_the_rows_being_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    signum: int, exit_code: int,
) -> None:
    # The command waited for its workers to draw the rows they had begun and the ones queued
    # to them (four a worker: minutes with these rows), though a stopped table is not written.
    out = _noting_rows(tmp_path, monkeypatch)
    monkeypatch.setattr(grades, "frame_row", drawing_for_a_minute)
    given_up = when_two_paint(tmp_path, lambda pids: os.kill(os.getpid(), signum))
    try:
        code = _exit_code([*TABLE, "--out", str(out)])
    finally:
        given_up.set()
    assert code == exit_code
    assert sorted((tmp_path / DRAWN).iterdir()) == []  # no row was drawn whole
    assert capsys.readouterr().err.splitlines()[-1] == (
        "models skin-table: stopped after drawing 0 of 6 frames, " + LOST.format(out=out))
    assert out.read_text() == "the earlier table\n"


@pytest.mark.slow  # starts two worker processes (spawn), one killed with SIGKILL
def test_a_worker_killed_is_named_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # It said 'a worker process ended abruptly': which one, of how many, and how?
    out = _noting_rows(tmp_path, monkeypatch)
    (tmp_path / PAINTING).mkdir()
    monkeypatch.setattr(grades, "frame_row", dying_on_the_first_row)
    assert _exit_code([*TABLE, "--out", str(out)]) == 1
    [killed] = [path.name for path in (tmp_path / PAINTING).iterdir()]
    assert capsys.readouterr().err == (
        "models skin-table: "
        f"worker process {killed} was killed by SIGKILL (kill -9, or out of memory) "
        f"after 0 of 6 frames were drawn, {LOST.format(out=out)}\n")
    assert out.read_text() == "the earlier table\n"


@pytest.mark.slow  # a real process group and its spawned workers
def test_ctrl_c_with_a_worker_idle_is_no_traceback(tmp_path: Path) -> None:
    # Row 0 takes a minute, rows 1-5 none: one worker waits for a row that never comes. It got
    # Ctrl-C too and printed a traceback of its own (one drawing a row took it as that row's
    # error), and the message did not say how many frames were drawn.
    (tmp_path / DRAWN).mkdir()
    (tmp_path / PAINTING).mkdir()
    out = tmp_path / "table.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO), ROWS_NOTED: str(tmp_path)}

    def drawing(pid: int) -> bool:
        if not ((tmp_path / DRAWN / "5").exists() and any((tmp_path / PAINTING).iterdir())):
            return False
        assert len(pool_workers(pid)) == 2
        return True

    code, err = ctrl_c_when(  # the worker that drew rows 1-5 waits for the next
        [sys.executable, "-c", WITH_THE_FIRST_ROW_FOR_A_MINUTE, *TABLE, "--out", str(out)],
        env, drawing, settle_s=1.0)
    assert code == 130, err
    assert err == ("models skin-table: stopped after drawing 0 of 6 frames, before the table was "
                   "written: nothing kept; the same command again draws them all\n")
    assert not (tmp_path / DRAWN / "0").exists()
    assert not out.exists()


@pytest.mark.slow  # starts two worker processes (spawn)
def test_rows_reach_the_table_in_order_while_later_ones_are_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table is built from the rows as they come (the progress bar counts them), not from
    # the whole set once the pool is done: the last row waits until the first one is taken.
    (tmp_path / TAKEN).mkdir()
    monkeypatch.setenv(ROWS_NOTED, str(tmp_path))
    monkeypatch.setattr(grades, "frame_row", last_row_after_the_first_is_taken)
    taken: list[grades.FrameRow] = []

    def take(row: grades.FrameRow) -> None:
        (tmp_path / TAKEN / str(len(taken))).touch()
        taken.append(row)

    grades.draw_rows(grades.TableSpec(rows=8), take, workers=2)
    assert [features["index"] for features, _ in taken] == list(range(8))
    assert taken[-1][1] == {"saw_row_0_taken": 1.0}


@pytest.mark.slow  # starts two worker processes (spawn) and draws 8 frames twice
def test_two_workers_make_the_table_one_makes() -> None:
    spec = grades.TableSpec(rows=8, seed=3, features="truth")
    alone, pooled = grades.build_skin_table(spec), grades.build_skin_table(spec, workers=2)
    assert pooled.features.tobytes() == alone.features.tobytes()
    assert (pooled.labels, pooled.sources) == (alone.labels, alone.sources)
