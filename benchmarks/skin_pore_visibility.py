"""How visible each true pore is in the frame it was drawn in; prints one JSON object.

For every frame of the project's generator (``--preset``, frames ``--first`` to ``--last`` of
each ``--seeds`` series), the frame is rendered twice from the same generator state without
sensor noise, once as drawn and once with every pore left out (the renderer's random draws do
not depend on the pores, and pores never overlap, so around each pore the difference is that
pore alone). Per true pore, from the renderer's own pixels, never from the measurement:

- ``drop_grey``: median grey drop over the pore's disc (8-bit levels) the pore itself causes;
- ``drop_rel``: the same as a share of the grey without the pore;
- ``noise_grey``: the frame's noise and JPEG error near the pore (robust sd of the delivered
  frame minus the noiseless render, 8-bit levels);
- ``trace_share``: share of the disc where the drop exceeds 3 x ``noise_grey``;
- ``darker_share``: share of the disc darker, by 3 x ``noise_grey``, than the darkest 2 % of
  what the furrows and junctions already show within two radii of the centre (without the pore):
  the part of the pore that is more than a darker stretch of furrow;
- ``outline_share``: share of 32 directions around the pore's own (elliptical) outline in
  which the noiseless frame is darker at 0.6 of the way to the outline than at 1.5 x by
  3 x ``noise_grey``: how much of the pore's round edge one sees (a pore centred on a
  furrow as wide as itself shows its edge only across the furrow, one beside a furrow only on
  its hill side);
- ``shine_share``: median share of the disc's grey that is specular shine (the render with
  the frame's shine against the same render without it; the shine is added to the diffuse
  light, so a pore halves only the rest);
- ``on_furrow_share``: share of the disc inside a furrow (within half its width of a centre line);
- ``furrow_width_um``, ``furrow_depth``, ``edge_gap_um``: the nearest furrow's width, depth
  factor (wide preset) and the gap from the pore's edge to that furrow's edge (negative: they
  overlap); ``junction_dark``: the dark-junction layer's darkening at the centre.

Each pore is ``found`` when ``analyze`` counts a pore within its radius or 40 µm, as
``skin_pore_diagnosis.py`` matches them. The summary gives quantiles of every figure for found
and missed pores; ``--dump`` writes the per-pore records, ``--crops`` a few crops of missed
pores (delivered frame | noiseless | noiseless without the pores, pore outlines in green).
Fit seeds only (11, 12): this reads the ground truth's drawing, not the measurement.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from skin_common import int_at_least, load_average, nearest_segment


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="wide", help="the generator's preset")
    parser.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[11, 12])
    parser.add_argument("--first", type=int_at_least(0), default=0)
    parser.add_argument("--last", type=int_at_least(0), default=59)
    parser.add_argument("--dump", type=Path, help="write the per-pore records here (JSON)")
    parser.add_argument("--crops", type=Path, help="save crops of missed pores in this folder")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np
import numpy.typing as npt

from appliance.skin.analysis import analyze
from appliance.synthetic.skin import decode_jpeg, encode_jpeg, synthetic_scene
from appliance.synthetic.skin_extras import junction_darkening
from appliance.synthetic.skin_geometry import SkinGeometry
from appliance.synthetic.skin_render import furrow_fields, pore_field, render_linear, render_rgb

Grey = npt.NDArray[np.float32]
OUTLINE_DIRECTIONS = 32
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
FIGURES = ("diameter_um", "drop_grey", "drop_rel", "noise_grey", "trace_share", "darker_share",
           "outline_share", "shine_share", "on_furrow_share", "furrow_width_um", "furrow_depth",
           "edge_gap_um", "junction_dark")


def _grey(rgb: npt.NDArray[Any]) -> Grey:
    """Grey levels (0..255) of an RGB image, 8-bit or linear (1.0 = 255; clipped as the
    8-bit conversion clips, so a pore in saturated shine shows nothing)."""
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * np.float32(255.0), 0.0, 255.0)
    return np.asarray(rgb.astype(np.float32) @ GREY_WEIGHTS, np.float32)


def _without_pores(geometry: SkinGeometry, keep: npt.NDArray[np.bool_]) -> SkinGeometry:
    """``geometry`` with only the pores where ``keep`` is true."""
    def kept(values: npt.NDArray[Any] | None) -> npt.NDArray[Any] | None:
        return None if values is None else values[keep]

    return replace(geometry, pore_centres_px=geometry.pore_centres_px[keep],
                   pore_radii_px=geometry.pore_radii_px[keep],
                   pore_at_junction=geometry.pore_at_junction[keep],
                   pore_axis_ratio=kept(geometry.pore_axis_ratio),
                   pore_angle_rad=kept(geometry.pore_angle_rad))


class _Scene:
    """One frame: delivered pixels, noiseless renders with and without pores, furrow maps."""

    def __init__(self, seed: int, index: int, preset: str) -> None:
        rng, self.params, self.geometry = synthetic_scene(seed, index, preset)
        state = rng.bit_generator.state
        delivered = render_rgb(rng, self.geometry, self.params)
        self.rgb = decode_jpeg(encode_jpeg(delivered, self.params.jpeg_quality))
        rng.bit_generator.state = state
        self.clean = _grey(render_linear(rng, self.geometry, self.params)[0])
        rng.bit_generator.state = state
        no_pores = _without_pores(self.geometry, np.zeros(len(self.geometry.pore_radii_px), bool))
        self.bare = _grey(render_linear(rng, no_pores, self.params)[0])
        rng.bit_generator.state = state  # the shine's draws happen whatever its strength
        self.matt = _grey(render_linear(rng, self.geometry, replace(self.params, shine=0.0))[0])
        self.residual = _grey(self.rgb) - self.clean
        self.distance, self.width = furrow_fields(self.geometry)
        self.junction = junction_darkening(self.geometry, self.params)

    def disc(self, pore: int) -> npt.NDArray[np.bool_]:
        """The pore's own disc (its depth at least half), from the renderer's pore field."""
        keep = np.arange(len(self.geometry.pore_radii_px)) == pore
        return pore_field(_without_pores(self.geometry, keep)) >= 0.5


def _outline_share(scene: _Scene, pore: int, noise_grey: float) -> float:
    """Share of directions in which the pore's edge shows (see the module docstring)."""
    geometry = scene.geometry
    (cx, cy), radius = geometry.pore_centres_px[pore], float(geometry.pore_radii_px[pore])
    ratio = float(geometry.pore_axis_ratio[pore]) if geometry.pore_axis_ratio is not None else 1.0
    angle = float(geometry.pore_angle_rad[pore]) if geometry.pore_angle_rad is not None else 0.0
    t = np.linspace(0.0, 2.0 * np.pi, OUTLINE_DIRECTIONS, endpoint=False)
    along, across = radius / np.sqrt(ratio) * np.cos(t), radius * np.sqrt(ratio) * np.sin(t)
    dx = along * np.cos(angle) - across * np.sin(angle)
    dy = along * np.sin(angle) + across * np.cos(angle)

    def grey_at(scale: float) -> npt.NDArray[np.float32]:
        map_x = np.asarray(cx + scale * dx - 0.5, np.float32).reshape(1, -1)
        map_y = np.asarray(cy + scale * dy - 0.5, np.float32).reshape(1, -1)
        return np.asarray(cv2.remap(scene.clean, map_x, map_y, cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)[0], np.float32)

    return float(np.mean(grey_at(1.5) - grey_at(0.6) > 3.0 * noise_grey))


def _pore_record(scene: _Scene, pore: int) -> dict[str, float]:
    """The visibility figures of one true pore (see the module docstring)."""
    geometry, um = scene.geometry, scene.params.um_per_px
    (cx, cy), radius = geometry.pore_centres_px[pore], float(geometry.pore_radii_px[pore])
    disc = scene.disc(pore)
    reach = int(np.ceil(2.0 * radius + 3))
    x0, y0 = max(int(cx) - reach, 0), max(int(cy) - reach, 0)
    x1 = min(int(cx) + reach + 1, geometry.width_px)
    y1 = min(int(cy) + reach + 1, geometry.height_px)
    window = np.s_[y0:y1, x0:x1]
    ys, xs = np.mgrid[window].astype(np.float32) + 0.5
    around = np.hypot(xs - cx, ys - cy) <= 2.0 * radius + 3
    residual = scene.residual[window]
    noise = float(1.4826 * np.median(np.abs(residual - np.median(residual))))
    clean, bare, inside = scene.clean[window], scene.bare[window], disc[window]
    drop = (bare - clean)[inside]
    darkest_before = float(np.percentile(bare[around], 2))
    segment = nearest_segment(geometry.vertices_px[geometry.edges[:, 0]],
                              geometry.vertices_px[geometry.edges[:, 1]], np.array([cx, cy]))
    depth = geometry.edge_depth[segment] if geometry.edge_depth is not None else 1.0
    row, col = min(int(cy), geometry.height_px - 1), min(int(cx), geometry.width_px - 1)
    return {
        "diameter_um": 2.0 * radius * um,
        "drop_grey": float(np.median(drop)),
        "drop_rel": float(np.median(drop / np.maximum(bare[inside], 1.0))),
        "noise_grey": noise,
        "trace_share": float(np.mean(drop > 3.0 * noise)),
        "darker_share": float(np.mean(clean[inside] < darkest_before - 3.0 * noise)),
        "outline_share": _outline_share(scene, pore, noise),
        "shine_share": float(np.median(
            ((clean - scene.matt[window]) / np.maximum(clean, 1.0))[inside])),
        "on_furrow_share": float(np.mean(
            (scene.distance[window] < 0.5 * scene.width[window])[inside])),
        "furrow_width_um": float(geometry.edge_width_px[segment]) * um,
        "furrow_depth": float(depth),
        "edge_gap_um": (float(scene.distance[row, col]) - 0.5 * float(scene.width[row, col])
                        - radius) * um,
        "junction_dark": float(scene.junction[row, col]) if scene.junction is not None else 0.0,
        "at_junction": float(geometry.pore_at_junction[pore]),
    }


def _found(scene: _Scene) -> tuple[npt.NDArray[np.bool_], int]:
    """Which true pores ``analyze`` counts (a counted pore within the radius or 40 µm), and
    how many it counts."""
    result = analyze(scene.rgb, scene.params.um_per_px)
    counted = result.pore_centres_frame_px()
    centres, radii = scene.geometry.pore_centres_px, scene.geometry.pore_radii_px
    if not len(counted) or not len(centres):
        return np.zeros(len(centres), dtype=np.bool_), len(counted)
    reach = np.maximum(radii, 40.0 / scene.params.um_per_px)
    gaps = np.hypot(*(centres[:, None, :] - counted[None, :, :]).transpose(2, 0, 1))
    return np.asarray(gaps.min(axis=1) < reach, dtype=np.bool_), len(counted)


def _crop(scene: _Scene, pore: int, path: Path) -> None:
    """Save a crop around a pore: delivered | noiseless | noiseless without pores, 3x."""
    (cx, cy), radius = scene.geometry.pore_centres_px[pore], scene.geometry.pore_radii_px[pore]
    half = int(max(4.0 * radius, 25))
    x0, y0 = max(int(cx) - half, 0), max(int(cy) - half, 0)
    x1, y1 = min(int(cx) + half, scene.geometry.width_px), min(int(cy) + half,
                                                              scene.geometry.height_px)
    panels = [cv2.cvtColor(scene.rgb[y0:y1, x0:x1], cv2.COLOR_RGB2BGR)]
    for grey in (scene.clean, scene.bare):
        panel = np.clip(grey[y0:y1, x0:x1], 0, 255).astype(np.uint8)
        panels.append(cv2.cvtColor(panel, cv2.COLOR_GRAY2BGR))
    big = [cv2.resize(panel, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
           for panel in panels]
    for (px, py), r in zip(scene.geometry.pore_centres_px, scene.geometry.pore_radii_px,
                           strict=True):
        centre = (round((px - x0) * 3 * 16), round((py - y0) * 3 * 16))
        for panel in big[:2]:
            cv2.circle(panel, centre, round(r * 3 * 16), (0, 255, 0), 1, cv2.LINE_AA, 4)
    gap = np.full((big[0].shape[0], 6, 3), 255, np.uint8)
    cv2.imwrite(str(path), np.hstack([big[0], gap, big[1], gap, big[2]]))


def _quantiles(values: list[float]) -> list[float]:
    """10th, 50th and 90th percentile, rounded."""
    if not values:
        return []
    return [round(float(q), 3) for q in np.percentile(values, (10, 50, 90))]


def _count_errors(frames: list[dict[str, Any]], records: list[dict[str, float]],
                  counts: Any) -> dict[str, float]:
    """Median, p90 and signed median of the frames' relative count error against the true
    pores for which ``counts`` is true (frames without such pores left out)."""
    true_per_frame = {(f["seed"], f["index"]): 0 for f in frames}
    for record in records:
        true_per_frame[(record["seed"], record["index"])] += int(counts(record))
    signed = [(f["counted"] - true_per_frame[(f["seed"], f["index"])])
              / true_per_frame[(f["seed"], f["index"])]
              for f in frames if true_per_frame[(f["seed"], f["index"])]]
    if not signed:
        return {}
    return {"median": round(float(np.median(np.abs(signed))), 4),
            "p90": round(float(np.percentile(np.abs(signed), 90)), 4),
            "signed_median": round(float(np.median(signed)), 4)}


def _visibility_counts(records: list[dict[str, float]]) -> dict[str, int]:
    """How many missed (and found) pores show little of themselves."""
    def tally(name: str, below: float, found: float) -> int:
        return sum(r[name] < below and r["found"] == found for r in records)

    return {"missed_trace_under_half": tally("trace_share", 0.5, 0.0),
            "found_trace_under_half": tally("trace_share", 0.5, 1.0),
            "missed_outline_under_half": tally("outline_share", 0.5, 0.0),
            "found_outline_under_half": tally("outline_share", 0.5, 1.0),
            "missed_outline_under_three_quarters": tally("outline_share", 0.75, 0.0),
            "found_outline_under_three_quarters": tally("outline_share", 0.75, 1.0)}


def main() -> None:
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    records: list[dict[str, float]] = []
    frames: list[dict[str, float]] = []
    for seed in args.seeds:
        for index in range(args.first, args.last + 1):
            scene = _Scene(seed, index, args.preset)
            found, counted = _found(scene)
            frames.append({"seed": seed, "index": index, "true": len(found), "counted": counted})
            for pore, hit in enumerate(found):
                record = {"seed": seed, "index": index, "pore": pore, "found": float(hit),
                          **_pore_record(scene, pore)}
                records.append(record)
                if args.crops is not None and not hit:
                    args.crops.mkdir(parents=True, exist_ok=True)
                    _crop(scene, pore, args.crops / f"miss-{seed}-{index:03d}-{pore:02d}.png")
    if args.dump is not None:
        args.dump.write_text(json.dumps({"frames": frames, "pores": records}) + "\n")
    summary = {
        kind: {"pores": sum(r["found"] == want for r in records),
               **{name: _quantiles([r[name] for r in records if r["found"] == want])
                  for name in FIGURES}}
        for kind, want in (("found", 1.0), ("missed", 0.0))
    }
    errors = {"drawn": _count_errors(frames, records, lambda r: True),
              "with_a_trace": _count_errors(frames, records, lambda r: r["trace_share"] >= 0.5)}
    print(json.dumps({"benchmark": "skin_pore_visibility", "preset": args.preset,
                      "seeds": args.seeds, "frames": [args.first, args.last],
                      **summary, **_visibility_counts(records), "pore_count_error": errors,
                      "load_average": load_average()}))


if __name__ == "__main__":
    main()
