"""The shipped models are package data: an installed wheel, run from any folder, finds them
with importlib.resources (never through the repository's folders)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance.synthetic.skin import synthetic_frame

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_a_wheel_carries_the_models_and_analyze_grades_from_any_folder(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel"), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "wheel").glob("appliance-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(installed)
    for model in ("skin-texture-grade.int8.onnx", "msi-vgg19-w16.onnx", "msi-vgg19-w16.splits.csv"):
        assert f"appliance/shipped/{model}" in names
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "frame.jpg").write_bytes(synthetic_frame(2, 0, "fine").jpeg)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
    code = ("import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); import appliance; "
            "print(appliance.__file__, file=sys.stderr); runpy.run_module('appliance', "
            "run_name='__main__')")
    done = subprocess.run(
        [sys.executable, "-c", code, str(installed), "analyze", "frame.jpg", "--json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(str(installed))  # the wheel's copy ran, not the checkout
    assert json.loads(done.stdout)["classification"]["label"] in {"fine", "normal", "coarse"}
