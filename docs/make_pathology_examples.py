"""Write the README's pathology pictures: one synthetic MSI slide's heatmap and its CAM panel.

Run from the repository root: ``.venv/bin/python docs/make_pathology_examples.py``. It paints a
one-patient MSI cohort (seed 5, not the demo model's training seed 7; its surgical slide
is a mixed case, score 0.48), scores it with the shipped
model and saves the heatmap and the CAM panel as JPEG quality 80 in docs/images/.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2

from appliance.cli import main as appliance

OUT_DIR = Path(__file__).resolve().parent / "images"


def main() -> None:
    """Paint, score, and copy the two pictures of the surgical slide."""
    with tempfile.TemporaryDirectory(prefix="pathology-examples-") as scratch:
        cohort, results = Path(scratch) / "cohort", Path(scratch) / "results"
        appliance(["synth", "he", "--out", str(cohort), "--patients", "1", "--seed", "5",
                   "--msi-fraction", "1", "--quiet"])
        appliance(["pathology", "run", str(cohort), "--out", str(results)])
        slide = sorted((results / "heatmaps").glob("*.png"))[-1].stem  # P0000-S after -B
        for kind in ("heatmaps", "cams"):
            picture = cv2.imread(str(results / kind / f"{slide}.png"))
            target = OUT_DIR / f"pathology-{kind[:-1]}.jpg"
            cv2.imwrite(str(target), picture, [cv2.IMWRITE_JPEG_QUALITY, 80])
            print(f"{target}: {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
