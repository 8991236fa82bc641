"""Write the README's overlay examples: one synthetic frame per preset, measured and drawn.

Run from the repository root: ``.venv/bin/python docs/make_overlay_examples.py``. Each image is
the 1280x960 overlay scaled to 640x480 and saved as JPEG quality 80 (well under 150 KB).
"""

from __future__ import annotations

from pathlib import Path

import cv2

from appliance.skin.analysis import analyze
from appliance.skin.overlay import draw_overlay
from appliance.synthetic.skin import synthetic_frame

OUT_DIR = Path(__file__).resolve().parent / "images"
PRESETS = ("fine", "normal", "coarse")
SEED = 3


def main() -> None:
    """Write docs/images/overlay-<preset>.jpg for each preset."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for preset in PRESETS:
        skin = synthetic_frame(SEED, 0, preset)
        overlay = draw_overlay(skin.image_rgb, analyze(skin.image_rgb, skin.um_per_px))
        small = cv2.resize(overlay, (640, 480), interpolation=cv2.INTER_AREA)
        target = OUT_DIR / f"overlay-{preset}.jpg"
        cv2.imwrite(str(target), cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 80])
        print(f"{target}: {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
