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

from appliance.inference.runner import OnnxRunner
from appliance.synthetic.skin import synthetic_frame

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SHIPPED = ("skin-texture-grade.int8.onnx", "skin-texture-grade.selftest.csv",
           "msi-vgg19-w16.onnx", "msi-vgg19-w16.splits.csv")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a wheel built from this checkout, unpacked into a folder of its own."""
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = wheel_dir.glob("appliance-*.whl")
    installed = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(installed)
    for shipped in SHIPPED:
        assert f"appliance/shipped/{shipped}" in names
    return installed


def _run_installed(
    installed: Path, cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``appliance ARGS`` from the wheel's copy, in ``cwd``, with no APPLIANCE__ overrides."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
    code = ("import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); import appliance; "
            "print(appliance.__file__, file=sys.stderr); runpy.run_module('appliance', "
            "run_name='__main__')")
    done = subprocess.run(
        [sys.executable, "-c", code, str(installed), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(str(installed))  # the wheel's copy ran, not the checkout
    return done


def test_a_wheel_carries_the_models_and_analyze_grades_from_any_folder(
    installed: Path, tmp_path: Path
) -> None:
    (tmp_path / "frame.jpg").write_bytes(synthetic_frame(2, 0, "fine").jpeg)
    done = _run_installed(installed, tmp_path, "analyze", "frame.jpg", "--json")
    assert json.loads(done.stdout)["classification"]["label"] in {"fine", "normal", "coarse"}


def test_models_release_takes_its_self_test_from_the_wheel_in_any_folder(
    installed: Path, tmp_path: Path
) -> None:
    _run_installed(installed, tmp_path, "models", "repo", "init", "repo")
    model = installed / "appliance" / "shipped" / "skin-texture-grade.int8.onnx"
    version = OnnxRunner(model).contract.version  # a release names the version its model says
    done = _run_installed(installed, tmp_path, "models", "release", str(model),
                          "--repo", "repo", "--version", version)
    assert f"released skin-texture-grade {version}" in done.stdout
    assert "32 self-test vectors" in done.stdout
