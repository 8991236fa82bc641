"""`appliance synth skin` on a disk that fills up: every frame and sidecar left behind is
whole, the frames left are the series up to the one that could not be written (with several
workers too: no gap), and the error names that file, what was kept and how to finish."""

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
    assert err.endswith("; frame 0 is written whole; finish with --start 1 --count 2\n")
    assert left == ["skin-4-00000.jpg", "skin-4-00000.json"]  # no cut frame, no temporary
    assert frames["skin-4-00000.jpg"] == synthetic_frame(4, 0, "mixed").jpeg


def test_a_frame_whose_sidecar_cannot_be_written_is_not_left_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "skin-4-00001.json").mkdir()  # frame 1's truth cannot take its name
    code = main(["synth", "skin", "--out", str(tmp_path), "--count", "3", "--seed", "4",
                 "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "skin-4-00001.json: could not write it (Is a directory)" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "skin-4-00000.jpg", "skin-4-00000.json", "skin-4-00001.json"]  # no image without truth


@pytest.mark.slow  # starts two worker processes (spawn)
def test_several_workers_on_a_full_disk_leave_the_series_up_to_the_first_frame_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_tmpfs(tmp_path / "disk", size="1200k") as disk:  # room for two or three frames
        code = main(["synth", "skin", "--out", str(disk), "--count", "8", "--seed", "4",
                     "--workers", "2"])
        err = capsys.readouterr().err
        left = sorted(path.name for path in disk.iterdir())
    assert code == 1
    kept = len(left) // 2  # 0 too: a later frame's worker can fill the disk before frame 0's
    assert left == sorted(f"skin-4-{index:05d}.{suffix}" for index in range(kept)
                          for suffix in ("jpg", "json"))  # 0..k-1 whole, nothing after
    assert "No space left on device" in err
    assert err.endswith(f"; finish with --start {kept} --count {8 - kept}\n")
