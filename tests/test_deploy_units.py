"""The systemd units: ``systemd-analyze verify`` passes and the exposure scores stay low.

The units name the installed program (/opt/appliance/venv/bin/appliance); here that path is
replaced by this checkout's own ``appliance`` (the same program) so verify can check it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/opt/appliance/venv/bin/appliance"
UNITS = {  # file in deploy/ -> (name to verify it under, highest exposure allowed)
    "appliance-edge.service": ("appliance-edge.service", 2.0),
    "appliance-backoffice@.service": ("appliance-backoffice@backoffice-1.service", 2.0),
    # the GPU needs its device nodes and JIT compilers writable executable memory
    "appliance-pathology@.service": ("appliance-pathology@0.service", 3.5),
}


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: apt-get install systemd (./dev installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)


def local_copy(tmp_path: Path, source: str, name: str) -> Path:
    program = Path(sys.executable).parent / "appliance"
    assert program.exists(), program
    text = (DEPLOY / source).read_text().replace(INSTALLED, str(program))
    target = tmp_path / name
    target.write_text(text)
    return target


@pytest.mark.parametrize("source", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, source: str) -> None:
    unit = local_copy(tmp_path, source, UNITS[source][0])
    done = analyze("verify", str(unit))
    problems = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0, done.stderr
    assert problems == []


@pytest.mark.parametrize("source", sorted(UNITS))
def test_unit_exposure_is_at_most_its_limit(tmp_path: Path, source: str) -> None:
    name, limit = UNITS[source]
    unit = local_copy(tmp_path, source, name)
    done = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr[-500:]
    print(f"{name}: exposure {found.group(1)}")
    assert float(found.group(1)) <= limit
