"""`appliance synth skin` on a disk that fills up: every frame and sidecar left behind is
whole, and the error names the file that could not be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.synthetic.skin import synthetic_frame
from tests.disk_helpers import small_tmpfs


def test_a_full_disk_leaves_no_cut_frame_and_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_tmpfs(tmp_path / "disk", size="700k") as disk:  # room for one frame, not two
        code = main(["synth", "skin", "--out", str(disk), "--count", "3", "--seed", "4",
                     "--workers", "1"])
        err = capsys.readouterr().err
        left = sorted(path.name for path in disk.iterdir())
        frames = {path.name: path.read_bytes() for path in disk.glob("*.jpg")}
    assert code == 1
    assert "skin-4-00001.jpg: could not write it (No space left on device)" in err
    assert left == ["skin-4-00000.jpg", "skin-4-00000.json"]  # no cut frame, no temporary
    assert frames["skin-4-00000.jpg"] == synthetic_frame(4, 0, "mixed").jpeg
