"""The command line as a newcomer meets it: help with examples and defaults, one worker flag,
bare ``appliance`` prints help, and a closed pipe (``| head``) ends quietly."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import appliance
from appliance.backoffice import commands_demo, demo, fleet
from appliance.backoffice.export import QUERY_COLUMNS
from appliance.backoffice.store import open_store
from appliance.cli import build_parser, main
from appliance.cli_help import command_paths, leaf_commands
from appliance.cli_help_text import COMMAND_HELP
from appliance.config.backoffice import MAX_RETENTION_DAYS
from appliance.updates.defaults import DEFAULT_EXPIRY_S
from tests.signal_helpers import started_and_signalled

REPO = Path(__file__).resolve().parents[1]


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@functools.cache
def _every_help() -> dict[str, str]:
    """Each command's ``--help`` text, as ``main`` prints it, once for the walks over every
    command below (each walk built the whole parser again for each of some 60 commands)."""
    texts = {}
    for command in command_paths(build_parser()):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as done:
            main([*command.split(), "--help"])
        assert done.value.code == 0, command
        texts[command] = printed.getvalue()
    return texts


@pytest.mark.parametrize(("command", "taken"), [
    (["results"], "COMMAND (one of: query, export, dead-letters, retry, erase, release, "
                  "prune, erasures)"),
    (["synth"], "KIND (one of: he, skin, micrometer)"),
    (["console", "token"], "ACTION (one of: create, list, revoke)"),
])
def test_a_command_given_without_its_subcommand_names_the_ones_it_takes(
    capsys: pytest.CaptureFixture[str], command: list[str], taken: str
) -> None:
    """``appliance results`` alone said "the following arguments are required: COMMAND" under a
    usage line naming none, so a newcomer had to ask --help which there are."""
    with pytest.raises(SystemExit) as done:
        main(command)
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"appliance {' '.join(command)}: error: the following arguments are required: {taken}")


@pytest.mark.parametrize(("command", "ends"), [
    (["console"], " [COMMAND ...]"),  # `appliance console` alone starts the console
    (["results"], " COMMAND ..."),  # `appliance results` alone is refused
    (["console", "user"], " ACTION ..."),
])
def test_the_usage_line_brackets_a_subcommand_only_where_the_command_runs_without_one(
    capsys: pytest.CaptureFixture[str], command: list[str], ends: str
) -> None:
    """``appliance console --help`` showed "COMMAND ..." as if a subcommand were needed, though
    ``appliance console`` alone is how the console starts."""
    usage = _help(capsys, *command).split("\n\n")[0]
    assert usage.startswith(f"usage: appliance {' '.join(command)} ")
    assert usage.endswith(ends), usage


def test_bare_appliance_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: appliance")
    assert "appliance demo" in out
    assert "calibrate" in out


def test_every_command_has_a_description_and_examples() -> None:
    commands = command_paths(build_parser())
    groups = set(commands) - set(leaf_commands(build_parser()))
    # the walk over argparse's private names still finds the leaves and the groups
    assert len(commands) - len(groups) >= 20
    assert {"models", "models repo", "results", "pathology", "pathology job"} <= groups
    assert list(_every_help()) == commands
    for command, text in _every_help().items():
        description = text.split("\n\n")[1]  # the block after the usage lines
        assert not description.startswith(("positional arguments:", "options:")), (
            f"{command}: no description"
        )
        assert len(description) > 20, f"{command}: no description"
        assert f"examples:\n  appliance {command}" in text, f"{command}: no example"


def test_help_entries_name_real_commands_and_their_examples_parse() -> None:
    parser = build_parser()
    assert set(COMMAND_HELP) == set(command_paths(parser))  # no entry for a renamed command
    for command, (_, examples) in COMMAND_HELP.items():
        for example in examples:
            words = shlex.split(example.split("|")[0])
            if words[0] != "appliance":  # a line showing what to do with the output
                continue
            try:
                parser.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{command}: the example {example!r} does not parse")


@pytest.mark.parametrize(("command", "codes"), [
    (("pathology", "job", "submit"), ("Exit 0: sent (with --wait: every slide scored)",
                                      "1: with --wait, a slide or the job failed", "2: a bad",
                                      "or the broker refused the login",
                                      "3: no final state within --timeout")),
    (("pathology", "job", "list"), ("Exit 0: listed", "1: the broker was unreachable",
                                    "2: a bad config, or the broker refused the login")),
    (("pathology", "job", "cancel"), ("Exit 0: cancel requested",
                                      "1: the job is unknown or already ended", "2: a bad",
                                      "or the broker refused the login")),
])
def test_job_commands_document_their_exit_codes(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], codes: tuple[str, ...]
) -> None:
    text = " ".join(_help(capsys, *command).split())
    for code in codes:
        assert code in text, f"{' '.join(command)} --help does not say {code!r}"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("results", "query"), "2026-11-01T09:00:00Z"),  # --since: the format
        (("results", "export"), "(csv)"),  # --format: the default
        (("pathology", "run"), "auto = CUDA when present"),  # --provider
        (("synth", "he"), "0 to 1 (0.35)"),  # --msi-fraction
        (("models", "build-skin"), "the shipped model is never overwritten"),  # --out
        (("pathology", "evaluate"), "resamples, 10-100000 (1000)"),  # --bootstrap
        # --older-than: the range it refuses outside of, as the config's retention_days
        (("results", "prune"), f"this many days, 1 to {MAX_RETENTION_DAYS} "),
    ],
)
def test_options_show_their_default_or_format(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], shown: str
) -> None:
    assert shown in " ".join(_help(capsys, *command).split())


def _same_value(shown: str, default: str) -> bool:
    """Whether two texts of an option's help name the same value ("900" and "900.0")."""
    if shown == default:
        return True
    try:
        return float(shown) == float(default)
    except ValueError:
        return False


def test_no_option_shows_its_default_twice(capsys: pytest.CaptureFixture[str]) -> None:
    checked = 0
    for command, printed in _every_help().items():
        text = " ".join(printed.split())
        for before, default in re.findall(r"\(([^()]*)\) \(default: ([^()]*)\)", text):
            assert "default" not in before, f"{command}: ({before}) (default: {default})"
            assert not _same_value(before, default), f"{command}: ({before}) (default: {default})"
        assert "(default: [])" not in text, command
        # "(0: any free one) (default: 8470)": two asides in a row read as one garbled one
        assert not re.search(r"\([^()]*\) \(default: ", text), command
        checked += text.count("(default: ")
    assert checked > 20  # the formatter still adds the defaults help omits
    demo = " ".join(_help(capsys, "demo").split())
    assert "give up after this many seconds (900) --config" in demo


def test_no_option_shows_an_empty_default(capsys: pytest.CaptureFixture[str]) -> None:
    """`models halt --help` said "--reason REASON  why, recorded with who halted it (default: )":
    an option whose default is the empty text (nothing given) shows no default."""
    for command, printed in _every_help().items():
        text = " ".join(printed.split())
        assert "default: )" not in text, command
    halt = " ".join(_help(capsys, "models", "halt").split())
    assert "--reason REASON why, recorded with who halted it --config" in halt


def test_no_option_shows_where_the_package_is_installed(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`pathology run --help` gave the tile model's default as this checkout's (or the venv's
    site-packages) path, broken across lines: "(default: /work/.../appliance/shipped/msi-" and
    "vgg19-w16.onnx)". A shipped file is named as the shipped one, as `models show` names it."""
    package = str(Path(appliance.__file__).resolve().parent)
    for command, printed in _every_help().items():
        text = "".join(printed.split())
        assert "".join(package.split()) not in text, command
    for command in ("run", "submit"):
        shown = "".join(_help(capsys, "pathology", command).split())
        assert "tilemodel(default:theshippedmsi-vgg19-w16.onnx)" in shown


@pytest.mark.parametrize("arguments", [
    ["fleet", "-v"], ["demo", "--verbose"], ["results", "query", "-v"],
    ["results", "-v", "query"], ["analyze", "frame.jpg", "-v"],
    ["models", "repo", "init", "repo", "-v"], ["-v", "fleet"],
])
def test_the_verbose_flag_is_taken_after_the_command_as_before_it(arguments: list[str]) -> None:
    """`appliance fleet -v` was refused "appliance fleet: error: unrecognized arguments: -v": the
    flag was taken only before the command (`appliance -v fleet`), where few tools want it."""
    assert build_parser().parse_args(arguments).verbose is True
    plain = [word for word in arguments if word not in ("-v", "--verbose")]
    assert build_parser().parse_args(plain).verbose is False


def test_the_fleet_help_says_what_each_column_of_its_table_is(
        capsys: pytest.CaptureFixture[str]) -> None:
    """After the demo a newcomer met CLOCK ("1s behind, read 6s ago") and CAMERA ("online, 3s
    ago" beside an offline kiosk) in `appliance fleet`, which its help did not name."""
    said = {"SITE": "site", "DEVICE_ID": "device id", "STATE": "state (online/offline)",
            "LAST_SEEN": "last seen", "CLOCK": "clock as last read",
            "SOFTWARE_VERSION": "software version", "MODEL": "model",
            "CAMERA": "camera (as last reported)", "OUTBOX_DEPTH": "outbox depth",
            "OLDEST_UNSENT": "oldest un-sent result", "DROPPED": "results dropped"}
    assert list(said) == [fleet.HEADERS.get(c, c.upper()) for c in fleet.FLEET_COLUMNS]
    text = " ".join(_help(capsys, "fleet").split())
    for header, words in said.items():
        assert words in text, header


def test_the_results_query_help_names_each_column_of_its_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`results query` prints PLACED_AT before CAPTURED_AT, two times of one capture, and its
    help said only "the newest stored results": which time is which was in the README alone."""
    text = " ".join(_help(capsys, "results", "query").split())
    for column in QUERY_COLUMNS:
        assert f"{column} (" in text or f"{column}," in text or f"{column} and" in text, column
    assert "placed_at (the capture as the back office places it" in text
    assert "captured_at (the time the kiosk's own clock wrote)" in text


def test_one_name_for_worker_processes(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("synth skin", "synth he", "models skin-table"):
        text = _help(capsys, *command.split())
        assert "--workers" in text, command
        assert "--jobs" not in text, command


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``appliance ARGS`` writing into a pipe nobody reads any more (``| head`` done)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "appliance", *args], stdout=write_end,
            stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    open_store(url).close()
    for args in (("fleet", "--json"), ("results", "export"), ("results", "query")):
        done = _into_closed_pipe(*args, "--store", url)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "BrokenPipe" not in done.stderr
        assert "export failed" not in done.stderr


def test_a_command_started_with_standard_output_closed_ends_with_its_own_code(
        tmp_path: Path) -> None:
    """Started with ``>&-`` (sys.stdout is None), every command ended in a traceback from its
    final flush, exit 1, whatever it had done; now it ends as it would into /dev/null."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    open_store(url).close()
    for args in (("config", "check", "config.yaml"), ("fleet", "--store", url),
                 ("results", "query", "--store", url)):
        done = subprocess.run(
            ["bash", "-c", 'exec "$@" >&-', "appliance", sys.executable, "-m", "appliance",
             *args], cwd=REPO, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Traceback" not in done.stderr


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path: whatever a command given an accepted value would make lands there."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(("command", "option", "value"), [
    (["models", "deploy", "m", "1.0.0"], "--timeout-s", "nan"),  # halted every wave at once
    (["models", "deploy", "m", "1.0.0"], "--timeout-s", "-1"),
    (["models", "deploy", "m", "1.0.0"], "--wave", "0"),  # silently taken as 1
    (["models", "deploy", "m", "1.0.0"], "--canary", "-1"),  # silently taken as 0
    (["models", "deploy", "m", "1.0.0"], "--max-failures", "-1"),
    (["models", "rollback", "m"], "--timeout-s", "inf"),
    (["demo"], "--timeout-s", "nan"),  # gave up at once
    (["models", "skin-table", "--out", "t.csv"], "--label-noise", "nan"),  # labels from NaN
    (["models", "skin-table", "--out", "t.csv"], "--label-noise", "-1"),  # a traceback
    (["models", "skin-table", "--out", "t.csv"], "--rows", "0"),  # were taken silently
    (["models", "skin-table", "--out", "t.csv"], "--seed", "-1"),
    (["models", "skin-table", "--out", "t.csv"], "--workers", "0"),
    (["pathology", "run", "slides", "--out", "r"], "--batch-size", "0"),
    (["pathology", "run", "slides", "--out", "r"], "--cam-tiles", "-1"),
    (["pathology", "evaluate", "--labels", "l.csv", "--results", "r"], "--bootstrap", "-1"),
])
@pytest.mark.usefixtures("in_tmp_path")
def test_a_number_outside_its_range_is_refused_naming_the_option(
    command: list[str], option: str, value: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as refused:
        main([*command, f"{option}={value}"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert re.search(rf"argument {option}: must be a (finite|whole) number", err), err


@pytest.mark.parametrize(("command", "argument"), [
    (["synth", "skin", "--count", "1", "--out", ""], "--out"),
    (["synth", "he", "--out", ""], "--out"),
    (["synth", "micrometer", "--out", ""], "--out"),
    (["models", "build-skin", "--data", "t.csv", "--out", ""], "--out"),
    (["models", "build-skin", "--data", "", "--out", "m"], "--data"),
    (["models", "skin-table", "--out", ""], "--out"),
    (["models", "evaluate", "", "--data", "t.csv"], "model"),
    (["models", "repo", "init", ""], "dir"),
    (["models", "repo", "refresh", ""], "dir"),
    (["models", "repo", "serve", ""], "dir"),
    (["models", "release", "m.onnx", "--version", "1.0.0", "--repo", ""], "--repo"),
    (["models", "release", "m.onnx", "--version", "1.0.0", "--repo", "r", "--vectors", ""],
     "--vectors"),
    (["models", "deploy", "skin-texture-grade", "1.0.0", "--all", "--repo", ""], "--repo"),
    (["models", "status", "--repo", ""], "--repo"),
    (["models", "halt", "skin-texture-grade", "--repo", ""], "--repo"),
    # analyze and calibrate called '' the working folder: ".: a folder, not an image file"
    (["analyze", ""], "IMG"),
    (["analyze", "frame.jpg", ""], "IMG"),
    (["analyze", "--white", "", "frame.jpg"], "--white"),
    (["calibrate", "", "--mm", "0.1"], "IMAGE"),
])
@pytest.mark.usefixtures("in_tmp_path")
def test_an_empty_path_is_refused_not_taken_as_the_working_folder(
    command: list[str], argument: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A script's "$DIR" with DIR unset: synth skin wrote its frames into the working folder,
    repo init made a repository there, build-skin built into it."""
    with pytest.raises(SystemExit) as refused:
        main(command)
    assert refused.value.code == 2
    assert (f"argument {argument}: empty; name a file or folder (a script's \"$VARIABLE\" left "
            "unset?)") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("devices", ["33", "99999"])
def test_demo_refuses_more_simulated_kiosks_than_the_machine_can_run(
    devices: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each is a whole edge daemon process: --devices 99999 started them until the machine
    stalled (load average over 1,500) instead of being refused. Only parsed here: nothing runs."""
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["demo", "--devices", devices])
    assert refused.value.code == 2
    assert f"argument --devices: must be a whole number from 1 to 32, got '{devices}'" in (
        capsys.readouterr().err)
    assert build_parser().parse_args(["demo", "--devices", "32"]).devices == 32


@pytest.mark.parametrize("count", ["48001", "10000000"])
def test_demo_refuses_more_results_than_its_longest_timeout_can_wait_for(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A result takes about 1.2 s an edge: --count 10000000 was taken and ran until the 900 s
    timeout failed it. Past what one edge makes in the longest --timeout-s (86,400 s at 1.8 s
    a result) the number itself is refused. Only parsed here: nothing runs."""
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["demo", "--count", count])
    assert refused.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [f"appliance demo: error: argument --count: must be a whole number from 1 "
                      f"to 48000, got '{count}'"]


@pytest.mark.parametrize(("devices", "timeout_s", "fits"), [
    (1, 900, 500), (2, 900, 500), (4, 900, 250), (32, 900, 31), (1, 3600, 2000),
    (32, 3600, 125), (32, 10, 0),
])
def test_the_demo_s_count_follows_its_timeout_and_its_kiosks_on_two_cores(
        devices: int, timeout_s: float, fits: int) -> None:
    assert commands_demo.fitting_count(devices, timeout_s, cores=2) == fits


class _DemoRuns:
    """run_demo stood in for: the runs asked for, none made."""

    def __init__(self) -> None:
        self.counts: list[tuple[int, int]] = []

    def __call__(self, devices: int, count: int, timeout_s: float, **kwargs: object) -> int:
        self.counts.append((devices, count))
        return 0


@pytest.fixture
def demo_runs(monkeypatch: pytest.MonkeyPatch) -> _DemoRuns:
    """The demo on a 2-core machine, its run recorded instead of made (nothing starts)."""
    runs = _DemoRuns()
    monkeypatch.setattr(demo, "run_demo", runs)
    monkeypatch.setattr(commands_demo, "demo_cores", lambda: 2)
    return runs


def test_the_demo_refuses_a_count_its_kiosks_cannot_make_in_its_timeout(
        demo_runs: _DemoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    """--count was capped at 500 a kiosk whatever --devices said: 32 kiosks sharing 2 cores
    were sent 500 customers each, 16,000 results, and failed at the 900 s timeout with most of
    them missing. Now the cap follows what those kiosks make in --timeout-s, and says so."""
    assert main(["demo", "--devices", "32", "--count", "500", "--throwaway"]) == 2
    assert capsys.readouterr().err.strip() == (
        "demo: --count 500 with --devices 32 on 2 core(s) needs about 14400 s, more than "
        "--timeout-s 900: give --count 31 or less, or raise --timeout-s to 14400")
    assert main(["demo", "--devices", "32", "--count", "1", "--timeout-s", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "not even one result a kiosk fits: give fewer --devices, or raise --timeout-s to 29")
    assert demo_runs.counts == []


def test_the_timeout_a_demo_refusal_names_is_taken_with_its_count(
        demo_runs: _DemoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    """3 kiosks on 2 cores take 2.7 s a result, which binary floating point made 2.7000000000000002:
    --count 30 was said to need 81 s, and --timeout-s 81 was then refused as too short for it."""
    assert main(["demo", "--devices", "3", "--count", "30", "--timeout-s", "80",
                 "--throwaway"]) == 2
    assert capsys.readouterr().err.strip().endswith("raise --timeout-s to 81")
    assert main(["demo", "--devices", "3", "--count", "30", "--timeout-s", "81",
                 "--throwaway"]) == 0
    assert demo_runs.counts == [(3, 30)]


def test_the_demo_takes_more_than_500_a_kiosk_when_its_timeout_fits_them(
        demo_runs: _DemoRuns) -> None:
    assert main(["demo", "--devices", "2", "--count", "1000", "--timeout-s", "1800",
                 "--throwaway"]) == 0
    assert main(["demo", "--devices", "32", "--count", "31", "--throwaway"]) == 0
    assert demo_runs.counts == [(2, 1000), (32, 31)]


TERMINATED_WHILE_WRITING = """
import os, signal, sys, time
import appliance.outfile as outfile

def terminated_while_writing(path):  # the file is written, not yet flushed nor renamed
    os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL_SENT"]))
    time.sleep(float(os.environ.get("SLEEP_AFTER", "60")))

outfile.fsync_path = terminated_while_writing
from appliance.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_ends_any_command_as_ctrl_c_leaving_no_partial_file(
        tmp_path: Path, signame: str) -> None:
    """Only the back-office commands turned SIGTERM (`timeout`, systemd) into a clean stop;
    `synth skin`, `pathology run`, `models skin-table`, ... were killed where they stood and
    left the hidden file they were writing beside the output, one more each time. Here the
    signal comes while a frame is being written. SIGHUP (the terminal closed) met its default
    action in every one-shot command until session 29 and left the hidden file too."""
    out = tmp_path / "frames"
    done = subprocess.run(
        [sys.executable, "-c", TERMINATED_WHILE_WRITING, "synth", "skin", "--out", str(out),
         "--count", "1", "--seed", "5"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
             "SIGNAL_SENT": signame})
    assert done.returncode == 128 + getattr(signal, signame), done.stderr
    assert list(out.iterdir()) == []


def test_a_one_shot_command_under_nohup_writes_on_through_a_hangup(tmp_path: Path) -> None:
    """Under `nohup` (SIGHUP ignored before the command starts) a hangup while the frame is
    written is ignored, as the caller asked: the frame and its sidecar are written whole."""
    out = tmp_path / "frames"
    done = subprocess.run(
        [sys.executable, "-c", TERMINATED_WHILE_WRITING, "synth", "skin", "--out", str(out),
         "--count", "1", "--seed", "5"],
        capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
             "SIGNAL_SENT": "SIGHUP", "SLEEP_AFTER": "0"})
    assert done.returncode == 0, done.stderr
    assert sorted(path.suffix for path in out.iterdir()) == [".jpg", ".json"]


@pytest.mark.parametrize(("signame", "code"), [("SIGTERM", 128 + 15), ("SIGINT", 130)])
def test_a_stop_signal_while_the_command_is_read_ends_it_as_a_later_one(
    tmp_path: Path, signame: str, code: int,
) -> None:
    """A SIGTERM while the command line was read was held, then handed to SIGTERM's default
    action as the command began, before its own stop handling was in place: killed where it
    stood (-15 here, 143 in a shell), not its clean exit 143. Sent as the command modules import
    their argument types (while the parser is built; `synth skin` loads no config models)."""
    out = tmp_path / "frames"
    exit_code, err = started_and_signalled("appliance.synthetic.arguments", signame, "synth",
                                           "skin", "--out", str(out), "--count", "1", "--seed", "5")
    assert (exit_code, err) == (code, "")
    assert not out.exists()


def test_a_sigterm_while_a_one_shot_back_office_command_is_read_ends_it_cleanly(
    tmp_path: Path,
) -> None:
    """``backoffice --retire`` takes stop signals as the other one-shot commands do; a held
    SIGTERM killed it by the default action too. It ends before it reaches the broker."""
    config = tmp_path / "config.yaml"
    config.write_text(f"mqtt: {{host: 127.0.0.1, port: 1}}\nstate_dir: {tmp_path / 'state'}\n")
    exit_code, err = started_and_signalled("appliance.config", "SIGTERM", "backoffice",
                                           "--retire", "--config", str(config))
    assert (exit_code, err) == (128 + 15, "")


@pytest.mark.parametrize("command", [["query"], ["export", "--format", "csv", "--out", "OUT"]])
@pytest.mark.parametrize("since", ["", " "])
def test_an_empty_since_is_refused_not_taken_for_every_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
        since: str) -> None:
    """``--since "$START"`` with START unset queried and exported every result, as no --since
    would: an empty string was taken for none. Now refused, exit 2, nothing written."""
    store = ["--store", f"sqlite:///{tmp_path / 'store.sqlite3'}"]
    assert main(["store", "migrate", *store]) == 0
    capsys.readouterr()
    out = tmp_path / "results.csv"
    arguments = [str(out) if word == "OUT" else word for word in command]
    assert main(["results", *arguments, "--since", since, *store]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (  # named its option, not its command
        f"results {command[0]}: --since {since!r}: empty; give an ISO date or date-time (e.g. "
        "2026-11-01), or leave "
        "--since out for every result (a script's \"$VARIABLE\" left unset?)")
    assert captured.out == ""
    assert not out.exists()


def test_help_names_the_defaults_a_stranger_would_otherwise_guess(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`models show --help` said only "ONNX model" for an optional argument that defaults to
    the shipped model; `models repo init --help` gave the timestamp's expiry alone."""
    for command in (["models", "show", "--help"], ["models", "repo", "init", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
    shown = " ".join(capsys.readouterr().out.split())
    assert "model ONNX model (default: the shipped skin-texture-grade.int8.onnx)" in shown
    expected = ", ".join(f"{role} {seconds // 86400} day{'' if seconds == 86400 else 's'}"
                         for role, seconds in DEFAULT_EXPIRY_S.items())
    assert "ROLE=S seconds a role's metadata stays valid (default: " in shown
    for role_days in expected.split(", "):
        assert role_days in shown, role_days


@pytest.mark.parametrize(("arguments", "command"), [
    (["synth", "he", "--out", "d", "--slides", "0"], "appliance synth he"),
    (["console", "user", "list", "--bogus"], "appliance console user list"),
    (["fleet", "--bogus"], "appliance fleet"),
    (["--bogus", "fleet"], "appliance fleet"),
])
def test_an_unknown_option_is_refused_by_the_command_given_with_its_usage(
        capsys: pytest.CaptureFixture[str], arguments: list[str], command: str) -> None:
    """argparse refuses what no parser took at the top level: `synth he --slides 0` said
    'appliance: error: unrecognized arguments' under the usage of `appliance` itself, which
    lists no option of synth he. Now the command typed refuses it, under its own usage."""
    with pytest.raises(SystemExit) as refused:
        main(arguments)
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {command} [-h]")
    assert err.splitlines()[-1].startswith(f"{command}: error: unrecognized arguments: ")


def test_the_demo_refuses_an_empty_store_rather_than_fill_the_default_one(
        demo_runs: _DemoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --store "$URL"` with URL unset ran the demo into the store `appliance fleet` reads
    by default, as if no --store were given."""
    with pytest.raises(SystemExit) as refused:
        main(["demo", "--store", ""])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "appliance demo: error: argument --store: empty; name the store (sqlite:///PATH or "
        "postgresql://...), or leave --store out for the default one (a script's "
        "\"$VARIABLE\" left unset?)")
    assert demo_runs.counts == []


@pytest.mark.parametrize("command", [
    ["console"], ["console", "user", "list"], ["models", "status", "--repo", "r"],
    ["models", "halt", "skin-texture-grade", "--repo", "r"],
    ["models", "deploy", "skin-texture-grade", "1.0.0", "--all", "--repo", "r"], ["fleet"],
])
def test_an_empty_store_is_refused_where_it_was_taken_for_the_default_one(
        command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`console --store "$URL"` with URL unset served the default store, and models status
    and deploy read and wrote it: they took '' for no --store. Only parsed here."""
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args([*command, "--store", ""])
    assert refused.value.code == 2
    assert "argument --store: empty; name the store" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "argument"), [
    (["pathology", "run", "", "--out", "o"], "folder"),
    (["pathology", "run", "slides", "--out", ""], "--out"),
    (["pathology", "run", "slides", "--out", "o", "--model", ""], "--model"),
    (["pathology", "submit", "", "--out", "o"], "slides"),
    (["pathology", "evaluate", "--labels", "", "--results", "r"], "--labels"),
    (["pathology", "evaluate", "--labels", "l.csv", "--results", ""], "--results"),
    (["pathology", "evaluate", "--labels", "l.csv", "--results", "r", "--splits", ""],
     "--splits"),
    (["pathology", "job", "submit", "", "--um-per-px", "0.5"], "slides"),
])
def test_an_empty_pathology_path_is_refused_not_taken_as_the_working_folder(
    command: list[str], argument: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """pathology took '' for the working folder: `run "$SLIDES" --out o` scored the slides
    there, `--out ""` wrote its results there, `job submit ""` sent them to the servers. Only
    parsed here (main would run them)."""
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(command)
    assert refused.value.code == 2
    assert (f"argument {argument}: empty; name a file or folder (a script's \"$VARIABLE\" left "
            "unset?)") in capsys.readouterr().err


def test_the_console_help_says_a_user_is_added_before_the_console_is_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`appliance console --help` said every page needs a login but not where one comes from:
    its examples started the console on a store with no user, before a login form that
    nothing opened."""
    text = _help(capsys, "console")
    examples = text.split("examples:", 1)[1].split()
    assert "(a user made with `console user add` first)" in " ".join(text.split())
    assert " ".join(examples).startswith("appliance console user add alice --role operator "
                                         "appliance console")
