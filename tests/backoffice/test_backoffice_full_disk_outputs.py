"""A full disk under ``results export`` and ``report cohort``: the old file stays whole, no
partial or empty file is left under the target's name or beside it, and the message names it.

The disk is a real 64 KiB tmpfs (CI runs as root, as this machine does).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.schema import result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.synthetic import fleet as fleetsim
from tests.disk_helpers import small_tmpfs

LAST_WEEK = "last week's export\n"


def _store(folder: Path, count: int) -> str:
    url = f"sqlite:///{folder / 'store.sqlite3'}"
    store = open_store(url)
    rng = random.Random(5)
    results = [fleetsim.sample_result(rng, "lab", "k1", i) for i in range(count)]
    rows = [result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode()) for r in results]
    store.write_batch(Batch(results=rows), 100)
    store.close()
    return url


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: room for a small file, not for an export of 600 results."""
    with small_tmpfs(tmp_path / "disk", size="64k") as mount:
        yield mount


def test_a_forced_export_onto_a_full_disk_keeps_the_old_file_and_names_it(
    tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store(tmp_path, 600)
    out = small_disk / "results.csv"
    out.write_text(LAST_WEEK)
    assert main(["results", "export", "--store", url, "--out", str(out), "--force"]) == 1
    err = capsys.readouterr().err
    assert f"results export: failed: {out}: could not write it (No space left on device)" in err
    assert out.read_text() == LAST_WEEK
    assert sorted(p.name for p in small_disk.iterdir()) == ["results.csv"]  # no temporary left


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_failed_export_leaves_no_file_to_block_the_next(
    fmt: str, tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store(tmp_path, 600)
    out = small_disk / f"results.{fmt}"
    command = ["results", "export", "--store", url, "--format", fmt, "--out", str(out)]
    assert main(command) == 1
    assert f"{out}: could not write it" in capsys.readouterr().err
    assert list(small_disk.iterdir()) == []
    assert main([*command[:-1], str(tmp_path / f"results.{fmt}")]) == 0  # elsewhere: it works


def test_a_cohort_report_onto_a_full_disk_leaves_no_part_of_a_figure(
    tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store(tmp_path, 60)
    (small_disk / "filler").write_bytes(b"x" * 40_000)  # room for part of the first figure
    assert main(["report", "cohort", "--store", url, "--out", str(small_disk)]) == 1
    err = capsys.readouterr().err
    assert f"{small_disk}/pore_count.png: could not write it (No space left on device)" in err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_reference_ranges_onto_a_full_disk_keep_the_old_file_and_name_it(
    tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store(tmp_path, 60)
    out = small_disk / "reference.json"
    out.write_text("{}\n")
    (small_disk / "filler").write_bytes(b"x" * 60_000)  # the disk is full
    assert main(["console", "--store", url, "reference", "--out", str(out), "--force"]) == 1
    assert f"{out}: could not write it (No space left on device)" in capsys.readouterr().err
    assert out.read_text() == "{}\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "reference.json"]


def test_a_report_into_a_read_only_folder_says_so_not_that_out_is_no_folder(
    tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report cohort --out DIR` on a read-only file system ended "...; --out names a folder
    to write", though DIR was one: the reason alone says what to fix."""
    url = _store(tmp_path, 40)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert main(["report", "cohort", "--store", url, "--out", str(small_disk)]) == 1
    assert capsys.readouterr().err == (  # the report is made in a hidden folder, moved in whole
        f"report cohort: {small_disk}: could not make a folder for the report's files in it "
        "(Read-only file system); nothing written\n")
    assert list(small_disk.iterdir()) == []
