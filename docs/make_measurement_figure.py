"""Write docs/images/measurement-annotated.jpg: what the skin measurement sees, with labels.

Run from the repository root: ``.venv/bin/python docs/make_measurement_figure.py``. A 640x480
patch of the project's generator ("normal" preset) gets, by hand, a pore on a furrow junction,
a pore on a hill, a brown pigment spot and a hair; it is measured, drawn as on the kiosk
(hills tinted, furrow centre lines traced, pores circled at their measured diameter) and
labelled. Shown at 2x.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from appliance.skin.analysis import analyze
from appliance.skin.overlay import draw_overlay
from appliance.synthetic.skin import decode_jpeg, encode_jpeg
from appliance.synthetic.skin_geometry import SkinGeometry, build_geometry
from appliance.synthetic.skin_params import sample_params
from appliance.synthetic.skin_render import render_rgb

TARGET = Path(__file__).resolve().parent / "images" / "measurement-annotated.jpg"
SCALE = 2
MELANIN_RGB = np.array([0.45, 0.75, 1.05], dtype=np.float32)


def _junction_near(geometry: SkinGeometry, x: float, y: float) -> np.ndarray:
    degree = np.bincount(geometry.edges.ravel(), minlength=len(geometry.vertices_px))
    junctions = geometry.vertices_px[degree >= 3]
    point: np.ndarray = junctions[np.argmin(np.hypot(junctions[:, 0] - x, junctions[:, 1] - y))]
    return point


def _roomiest_hill_near(geometry: SkinGeometry, x: float, y: float) -> np.ndarray:
    """The middle of the largest hill within 120 px of (x, y): a pore there stays clear of
    the furrows around it."""
    corners = [geometry.vertices_px[list(face)] for face in geometry.faces]
    middles = np.array([c.mean(axis=0) for c in corners])
    areas = np.array([cv2.contourArea(c.astype(np.float32)) for c in corners])
    near = np.hypot(middles[:, 0] - x, middles[:, 1] - y) < 120
    point: np.ndarray = middles[near][np.argmax(areas[near])]
    return point


def _scene() -> tuple[np.ndarray, float, dict[str, tuple[float, float]]]:
    """The patch and where its labelled things are (frame px)."""
    rng = np.random.default_rng(11)
    params = replace(sample_params(rng, "normal"), pore_density_per_cm2=0.0, hairs=1)
    geometry = build_geometry(rng, params, 640, 480)
    on_junction = _junction_near(geometry, 200, 160)
    empty_junction = _junction_near(geometry, 420, 330)
    in_hill = _roomiest_hill_near(geometry, 470, 150)
    centres = np.array([on_junction, in_hill])
    radii = np.array([170.0, 120.0]) / 2.0 / params.um_per_px
    geometry = replace(geometry, pore_centres_px=centres, pore_radii_px=radii,
                       pore_at_junction=np.array([True, False]))
    rgb = render_rgb(rng, geometry, params).astype(np.float32)
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    spot = 1.6 * np.exp(-((xs - 150) ** 2 + (ys - 380) ** 2) / (2 * 16.0**2))
    rgb *= np.exp(-spot[..., None] * MELANIN_RGB)
    image = decode_jpeg(encode_jpeg(np.clip(rgb, 0, 255).astype(np.uint8), 90))
    places = {"pore on a junction": (float(on_junction[0]), float(on_junction[1])),
              "pore on a hill": (float(in_hill[0]), float(in_hill[1])),
              "junction: not a pore": tuple(empty_junction),
              "pigment spot: not a pore": (150.0, 380.0), "hair: not a pore": _darkest_point(image)}
    return image, params.um_per_px, places


def _darkest_point(image: np.ndarray) -> tuple[float, float]:
    """The darkest spot of the picture (the hair: darker than any pore or furrow)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (0, 0), 2.0)
    _, _, (x, y), _ = cv2.minMaxLoc(gray)
    return float(x), float(y)


def _label(canvas: np.ndarray, text: str, at: tuple[float, float], offset: tuple[int, int]) -> None:
    tip = (round(at[0] * SCALE), round(at[1] * SCALE))
    box = (tip[0] + offset[0], tip[1] + offset[1])
    cv2.arrowedLine(canvas, box, tip, (255, 255, 255), 3, cv2.LINE_AA, tipLength=0.08)
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.8, 2)
    cv2.rectangle(canvas, (box[0] - 6, box[1] - height - 10), (box[0] + width + 6, box[1] + 8),
                  (0, 0, 0), -1)
    cv2.putText(canvas, text, box, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)


def main() -> None:
    """Measure the patch, draw it as the kiosk does, label it and save it."""
    image, um_per_px, places = _scene()
    analysis = analyze(image, um_per_px)
    drawn = draw_overlay(image, analysis)[: image.shape[0]]  # the frame, without the caption
    canvas = cv2.resize(drawn, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
    offsets = {"pore on a junction": (60, -90), "pore on a hill": (-120, -90),
               "junction: not a pore": (40, 110), "pigment spot: not a pore": (70, -120),
               "hair: not a pore": (-300, 160)}
    for name, offset in offsets.items():
        _label(canvas, name, places[name], offset)
    _label(canvas, "furrow centre line (cyan), hill cells (tinted)", (60.0, 60.0), (40, 60))
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(TARGET), bgr, [cv2.IMWRITE_JPEG_QUALITY, 82])
    print(f"{TARGET}: {analysis.features.pore_count} pores measured "
          f"{np.round(analysis.pores.diameters_um).tolist()} um (drawn: 170 and 120 um)")


if __name__ == "__main__":
    main()
