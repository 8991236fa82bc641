"""appliance.imagefile.write_image: whole images or one clear OSError, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.imagefile import write_image
from tests.disk_helpers import folder_fsync_fails

NOISE = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_an_image_is_written_whole_and_reads_back(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"a{suffix}"
    write_image(path, NOISE)
    back = cv2.imread(str(path))
    assert back.shape == NOISE.shape
    assert suffix == ".jpg" or np.array_equal(back, NOISE)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_missing_folder_is_an_oserror_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "a.png"
    with pytest.raises(OSError, match=r"no-such-folder/a.png: could not write the image: No such"):
        write_image(path, NOISE)


def test_an_unknown_suffix_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"a.txt: cannot encode an image as '.txt'"):
        write_image(tmp_path / "a.txt", NOISE)
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_mid_write_keeps_the_old_image_and_leaves_no_part(
    tmp_path: Path,
) -> None:
    """A file-size limit (RLIMIT_FSIZE) fails the write part-way, as a full disk does."""
    path = tmp_path / "a.png"
    write_image(path, NOISE[:20, :20])
    old = path.read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        import numpy as np
        from appliance.imagefile import write_image
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        noise = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
        try:
            write_image(Path({str(path)!r}), noise)
        except OSError as exc:
            print(exc)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == f"{path}: could not write the image: File too large"
    assert done.stderr == ""  # no encoder lines on stderr
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_ctrl_c_while_writing_keeps_the_old_image_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`synth he --workers` on Ctrl-C: each worker gets the KeyboardInterrupt, maybe between
    writing an image's temporary and renaming it."""
    path = tmp_path / "a.png"
    write_image(path, NOISE[:20, :20])
    old = path.read_bytes()

    def interrupted(source: object, target: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("appliance.imagefile.os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(path, NOISE)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_the_image_and_then_its_name_are_flushed_to_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary was renamed unflushed and the folder never flushed: a power cut after an
    overlay or a heatmap was reported written could leave an empty file, or the old one, under
    its name. Seen here: what each fsync flushed, and what the name held by then."""
    target = tmp_path / "overlay.png"
    write_image(target, NOISE[:20])
    old = target.read_bytes()
    flushed: list[tuple[str, bytes]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append((os.readlink(f"/proc/self/fd/{fd}"), target.read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_image(target, NOISE)
    new = target.read_bytes()
    assert flushed == [(str(tmp_path / ".overlay.png.tmp"), old), (str(tmp_path), new)]


def test_a_folder_that_cannot_be_flushed_is_an_oserror_naming_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image is whole under its name, but the caller must not report it safely kept."""
    target = tmp_path / "heatmap.png"
    folder_fsync_fails(monkeypatch)
    with pytest.raises(OSError, match=f"^{target}: written whole, but its folder could not be "
                       "flushed to disk \\(Input/output error\\)"):
        write_image(target, NOISE)
    assert np.array_equal(cv2.imread(str(target)), NOISE)
    assert list(tmp_path.iterdir()) == [target]
