"""A standard output that refuses the command's output (``> out.json`` on a full disk): one
line naming it and exit 1, never a traceback. /dev/full fails every write as a full disk does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from tests.skin_frames import generated

REPO = Path(__file__).resolve().parents[1]
FULL = "No space left on device"


def _into_dev_full(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "appliance", *args], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "good.jpg"
    path.write_bytes(generated(21, 0, "normal").jpeg)
    return path


@pytest.mark.parametrize("as_json", [True, False])
def test_analyze_says_what_it_printed_before_stdout_refused(frame: Path, as_json: bool) -> None:
    done = _into_dev_full("analyze", str(frame), str(frame), *(["--json"] if as_json else []))
    assert done.returncode == 1
    assert done.stderr == (f"analyze: cannot write to standard output: {FULL}; stopped after "
                           "printing the results of 0 of 2 images\n")


def test_calibrate_and_models_show_say_stdout_refused(tmp_path: Path) -> None:
    micrometer = tmp_path / "micrometer.png"
    assert main(["synth", "micrometer", "--out", str(micrometer), "--um-per-px", "9.6"]) == 0
    for command, args in (("calibrate", ("calibrate", str(micrometer), "--mm", "0.1")),
                          ("models show", ("models", "show"))):
        done = _into_dev_full(*args)
        assert (done.returncode, done.stderr) == (
            1, f"{command}: cannot write to standard output: {FULL}\n")


def test_every_command_s_printing_is_covered(tmp_path: Path) -> None:
    """Not only the commands that print through ``emit``: ``synth micrometer``'s and ``console
    user list``'s ``print`` ended in a traceback too."""
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    assert main(["store", "migrate", "--store", store]) == 0
    for command, args in (
        ("synth micrometer", ("synth", "micrometer", "--out", str(tmp_path / "m.png"),
                              "--um-per-px", "9.6")),
        ("console user list", ("console", "user", "list", "--store", store)),
        ("results query", ("results", "query", "--store", store)),
    ):
        done = _into_dev_full(*args)
        assert (done.returncode, done.stderr) == (
            1, f"{command}: cannot write to standard output: {FULL}\n")


@pytest.mark.parametrize("folder", ["repository", "empty"])
def test_config_check_says_stdout_refused(tmp_path: Path, folder: str) -> None:
    """In an empty folder its first line says it checks the built-in defaults."""
    done = _into_dev_full("config", "check", cwd=REPO if folder == "repository" else tmp_path)
    assert (done.returncode, done.stderr) == (
        1, f"config check: cannot write to standard output: {FULL}\n")


def test_a_reader_that_left_still_ends_quietly(frame: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", '"$@" | head -c 10 >/dev/null; exit "${PIPESTATUS[0]}"', "sh",
         sys.executable, "-m", "appliance", "analyze", "--json", str(frame), str(frame)],
        capture_output=True, text=True, cwd=REPO, check=False)
    assert (done.returncode, done.stderr) == (0, "")
