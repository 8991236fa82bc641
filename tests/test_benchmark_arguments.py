"""The pore benchmarks refuse bad arguments with argparse's exit 2, never a traceback, and their
--help opens with a whole sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (("--count", "0"), "argument --count: must be a whole number >= 1, got '0'"),
        (("--preset", "bogus"), "argument --preset: invalid choice: 'bogus'"),
        (("--seed", "-5"), "argument --seed: must be a whole number >= 0, got '-5'"),
    ],
)
def test_pore_diagnosis_refuses_bad_arguments(arguments: tuple[str, ...], complaint: str) -> None:
    done = _run("skin_pore_diagnosis.py", *arguments)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["skin_accuracy.py", "skin_speed.py"])
@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (("--count", "0"), "argument --count: must be a whole number >= 1, got '0'"),
        (("--seed", "-1"), "argument --seed: must be a whole number >= 0, got '-1'"),
    ],
)
def test_frame_set_benchmarks_refuse_bad_arguments(script: str, arguments: tuple[str, ...],
                                                   complaint: str) -> None:
    done = _run(script, *arguments)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (("--mixed", "0", "--wide", "0", "--scenes", "0"), "no frames to fit on"),
        (("--workers", "0"), "argument --workers: must be a whole number >= 1"),
        (("--seeds", "-1"), "argument --seeds: must be a whole number >= 0"),
    ],
)
def test_pore_rule_fit_refuses_bad_arguments(arguments: tuple[str, ...], complaint: str) -> None:
    done = _run("fit_pore_rule.py", *arguments)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "objective" not in done.stdout


@pytest.mark.parametrize("script",
                         ["fit_pore_rule.py", "fit_pore_score.py", "skin_pore_diagnosis.py"])
def test_help_opens_with_a_whole_sentence(script: str) -> None:
    done = _run(script, "--help")
    assert done.returncode == 0
    description = " ".join(done.stdout.split("\n\n")[1].split())
    assert description.endswith("prints one JSON object.")


def test_pore_rule_fit_help_explains_sweeps_and_workers() -> None:
    help_text = " ".join(_run("fit_pore_rule.py", "--help").stdout.split())
    assert "--sweeps SWEEPS most passes of the coordinate search" in help_text
    assert "--workers WORKERS processes profiling the frames" in help_text


@pytest.mark.parametrize("script", ["synth_speed.py", "hostile_inputs.py", "edge_delivery.py",
                                    "model_rollout.py"])
def test_help_is_help_not_a_run(script: str) -> None:
    """`--help` prints usage and exits, as on every other benchmark (these ran in full)."""
    done = _run(script, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: ")
    assert "{" not in done.stdout  # no JSON figures: nothing was measured


@pytest.mark.parametrize(
    ("script", "arguments", "complaint"),
    [
        ("edge_delivery.py", ("--quik",), "unrecognized arguments: --quik"),
        ("edge_delivery.py", ("latncy",), "argument PART: invalid choice: 'latncy'"),
        ("model_rollout.py", ("--kiosks",), "argument --kiosks: expected one argument"),
        ("model_rollout.py", ("--kiosks", "x"), "argument --kiosks: expected a whole number"),
        ("synth_speed.py", ("--count", "5"), "unrecognized arguments: --count 5"),
    ],
)
def test_unknown_or_bad_arguments_are_refused_before_anything_runs(
    script: str, arguments: tuple[str, ...], complaint: str
) -> None:
    """A typo was ignored (`--quik` ran the full benchmark, an unknown part name measured
    nothing) or a traceback (`--kiosks x`)."""
    done = _run(script, *arguments)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["calibration.py", "classifier.py", "console.py",
                                    "skin_furrow_oracle.py", "skin_texture.py"])
def test_help_describes_in_whole_sentences(script: str) -> None:
    """The description is the docstring's first paragraph, not its first line (which stopped
    mid-sentence: "... on synthetic stage micrometers over")."""
    done = _run(script, "--help")
    assert done.returncode == 0
    description = " ".join(done.stdout.split("\n\n")[1].split())
    assert description.endswith(".")


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (("--kept", "0"), "argument --kept: must be a whole number >= 1, got '0'"),
        (("--batches", "many"), "argument --batches: must be a whole number >= 1, got 'many'"),
    ],
)
def test_dead_letter_bounds_refuses_bad_arguments(arguments: tuple[str, ...],
                                                  complaint: str) -> None:
    done = _run("dead_letter_bounds.py", *arguments)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "Traceback" not in done.stderr


HEAVY = ("numpy", "cv2", "scipy", "PIL", "torch", "onnxruntime", "psycopg", "pydantic", "yaml",
         "paho", "tuf", "matplotlib", "appliance.config", "appliance.backoffice.store",
         "appliance.skin.analysis")
_EVERY_HELP = """
import contextlib, io, json, os, runpy, sys
folder, heavy = sys.argv[1], sys.argv[2].split(",")
sys.path.insert(0, folder)
found = {}
for name in sorted(os.listdir(folder)):
    if not name.endswith(".py") or name in ("skin_common.py", "soak_clients.py"):  # helpers
        continue
    before = set(sys.modules)
    sys.argv = [name, "--help"]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(os.path.join(folder, name), run_name="__main__")
        code = "ran on"
    except SystemExit as end:
        code = end.code
    loaded = sorted(m for m in set(sys.modules) - before if m in heavy)
    found[name] = [code, printed.getvalue().startswith("usage: "), loaded]
print(json.dumps(found))
"""


def test_every_benchmark_parses_its_arguments_before_importing_its_heavy_modules() -> None:
    """`--help` (and so a bad argument) of a benchmark cost 0.3-3 CPU-s: NumPy, OpenCV, the skin
    analysis, the store, torch were imported first. Each script's `--help` runs here in one
    process, one after the other, and must print its usage and exit 0 having loaded none of
    them (a script that did would show them; those after it could hide theirs, not pass it)."""
    import json

    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    done = subprocess.run([sys.executable, "-c", _EVERY_HELP, str(BENCHMARKS), ",".join(HEAVY)],
                          capture_output=True, text=True, timeout=120, env=env, check=True)
    found = json.loads(done.stdout)
    assert len(found) >= 38  # every script, not an empty folder
    assert {name: row for name, row in found.items() if row != [0, True, []]} == {}
