"""Write the README's overlay examples: one synthetic frame per preset, measured and drawn.

Run from the repository root: ``.venv/bin/python docs/make_overlay_examples.py``. Each image is
the overlay (the 1280x960 frame with the caption band below it, graded by the shipped model and
its grade said as ``appliance analyze --overlay`` says it: "between fine and normal" for a
near-tie) scaled to half size and saved as JPEG quality 80 (well under 150 KB).
"""

from __future__ import annotations

from pathlib import Path

import cv2

from appliance.edge.measure import shown_grade
from appliance.inference.classifier import DEFAULT_MODEL, SkinClassifier
from appliance.skin.analysis import analyze
from appliance.skin.overlay import draw_overlay
from appliance.synthetic.skin import synthetic_frame

OUT_DIR = Path(__file__).resolve().parent / "images"
PRESETS = ("fine", "normal", "coarse")
SEED = 3


def main() -> None:
    """Write docs/images/overlay-<preset>.jpg for each preset."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    classifier = SkinClassifier.load(DEFAULT_MODEL)
    for preset in PRESETS:
        skin = synthetic_frame(SEED, 0, preset)
        analysis = analyze(skin.image_rgb, skin.um_per_px)
        grade = shown_grade(classifier.classify(analysis.features.as_dict()))
        overlay = draw_overlay(skin.image_rgb, analysis, grade)
        half_size = (overlay.shape[1] // 2, overlay.shape[0] // 2)
        small = cv2.resize(overlay, half_size, interpolation=cv2.INTER_AREA)
        target = OUT_DIR / f"overlay-{preset}.jpg"
        cv2.imwrite(str(target), cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 80])
        print(f"{target}: {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
