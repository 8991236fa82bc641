"""`appliance pathology run/submit` on the inputs a newcomer's files bring: labels.csv as
spreadsheets save it, slide names that clash, images in less common modes, hostile names."""

from __future__ import annotations

from pathlib import Path

from appliance.pathology.labels import read_labels

HEADER = "slide,patient,label,material,um_per_px\n"


def test_labels_saved_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts the file with a byte order mark; the header is still read."""
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbf" + (HEADER + "S1,P1,MSI,biopsy,1.0\n").encode())
    rows = read_labels(labels)
    assert [(row.slide, row.patient, row.um_per_px) for row in rows] == [("S1", "P1", 1.0)]
