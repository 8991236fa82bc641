"""A synthetic H&E colorectal cohort with known MSI labels (``appliance synth he``).

Each slide is painted as hematoxylin and eosin concentration maps and turned into RGB with the
Beer-Lambert law, so stain vectors vary by simulated staining batch the way real ones do and
Macenko normalisation has real work to do. Tissue: tumour glands (epithelium around a lumen),
stroma, mucus, background and lymphocytes. MSI slides carry the histology the revised Bethesda
guidelines name (Umar et al., JNCI 2004): more tumour-infiltrating lymphocytes, mucinous and
medullary areas. A per-patient propensity drives all three, drawn from overlapping distributions
so the classes overlap the way real cohorts do.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from appliance.imagefile import temporary_of, write_image
from appliance.outfile import replaced_when_complete
from appliance.pathology.stain import REFERENCE_STAIN_OD
from appliance.synthetic.pool_stop import raise_first_failure, run_in_order

LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("slide", "patient", "label", "material", "um_per_px", "stain_batch")
STAIN_BATCHES = 6
SURGICAL_SIZE_PX = (3072, 3072)
BIOPSY_SIZE_PX = (1536, 3072)
LN10 = float(np.log(10.0))
# Spread of the per-patient MSI propensity around its class mean (0.22 MSS, 0.68 MSI). With
# 0.12 the classes still overlap (about 4 % of patients sit nearer the other class's mean), and
# a perfect reader of the propensity reaches a slide AUROC of about 0.99.
PROPENSITY_SD = 0.12


@dataclass(frozen=True)
class SlideSpec:
    """What one synthetic slide shows: patient, label, material and the MSI histology levels."""

    slide: str
    patient: str
    label: str
    material: str
    stain_batch: int
    msi_propensity: float
    seed: int
    um_per_px: float = 1.0


SlideJob = tuple[SlideSpec, Path, int]  # the slide, the folder it goes to, the JPEG quality

def cohort_specs(patients: int, seed: int, msi_fraction: float = 0.35) -> list[SlideSpec]:
    """The slides of a cohort: one per patient, a second (other material) for about a quarter."""
    rng = np.random.default_rng(seed)
    specs = []
    for number in range(patients):
        patient = f"P{number:04d}"
        msi = bool(rng.random() < msi_fraction)
        propensity = float(np.clip(rng.normal(0.68 if msi else 0.22, PROPENSITY_SD), 0.0, 1.0))
        batch = int(rng.integers(STAIN_BATCHES))
        materials = ["surgical" if rng.random() < 0.6 else "biopsy"]
        if rng.random() < 0.25:
            materials.append("biopsy" if materials[0] == "surgical" else "surgical")
        for material in materials:
            slide_propensity = float(np.clip(propensity + rng.normal(0, 0.05), 0.0, 1.0))
            specs.append(
                SlideSpec(
                    slide=f"{patient}-{material[0].upper()}",
                    patient=patient,
                    label="MSI" if msi else "MSS",
                    material=material,
                    stain_batch=batch,
                    msi_propensity=slide_propensity,
                    seed=int(rng.integers(2**31)),
                )
            )
    return specs


def write_cohort(
    out_dir: Path, specs: list[SlideSpec], quality: int = 88, workers: int = 1,
    progress: bool = False,
) -> Path:
    """Render every slide as ``<slide>.jpg`` into out_dir and write labels.csv; returns it.

    ``progress`` shows a bar on stderr (a large cohort takes minutes); when stderr is no
    terminal (a log, the journal), a plain line at each tenth instead of the bar's
    carriage-return line every tenth of a second."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, out_dir, quality) for spec in specs]
    with _progress_bar(len(jobs), progress) as bar:
        if workers > 1:
            _paint_in_pool(jobs, workers, bar.update)
        else:
            for job in jobs:
                _write_slide(job)
                bar.update()
    labels = out_dir / LABELS_FILE
    with replaced_when_complete(labels) as temp, temp.open("w", newline="") as handle:
        writer = csv.writer(handle)  # whole or not at all: a cut labels.csv names fewer slides
        writer.writerow(LABEL_COLUMNS)
        for spec in specs:
            writer.writerow(
                [spec.slide, spec.patient, spec.label, spec.material, spec.um_per_px,
                 spec.stain_batch]
            )
    return labels


class _TenthLines:
    """A progress bar's ``update`` for stderr that is no terminal: a line at each tenth."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.said = total, 0, -1

    def __enter__(self) -> _TenthLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, count: int = 1) -> None:
        self.done += count
        tenth = self.done * 10 // max(self.total, 1)
        if tenth > self.said:
            self.said = tenth
            print(f"painting slides: {self.done}/{self.total} slides "
                  f"({self.done * 100 // max(self.total, 1)}%)", file=sys.stderr, flush=True)


def _progress_bar(total: int, shown: bool) -> tqdm[None] | _TenthLines:
    if shown and not sys.stderr.isatty():
        return _TenthLines(total)
    return tqdm(total=total, desc="painting slides", unit="slide", disable=not shown)


def _paint_in_pool(jobs: list[SlideJob], workers: int, painted: Callable[[int], object]) -> None:
    """Paint ``jobs`` with ``workers`` processes; the first slide's error (OSError: the disk's,
    WorkerDied, naming the worker: one killed) or a stop signal ends the cohort at once.

    The slides being painted then are dropped, not finished: the cohort has no labels.csv yet
    and the same command with --force paints it whole again. A worker killed kept the command
    waiting for the others to paint a slide more each (seconds a slide), Ctrl-C for three
    slides that had not begun; their hidden temporaries go too."""
    try:
        run = run_in_order(_write_slide, [(job,) for job in jobs], workers,
                           keep_started=False, finished=painted)
    except BaseException:  # a stop signal, handed on once the pool has stopped
        _remove_temporaries(jobs)
        raise
    if run.failed:
        _remove_temporaries(jobs)
        raise_first_failure(run)


def _remove_temporaries(jobs: list[SlideJob]) -> None:
    """Remove the hidden temporaries that workers ended while writing a slide left."""
    for spec, out_dir, _ in jobs:
        temporary_of(out_dir / f"{spec.slide}.jpg").unlink(missing_ok=True)


def _write_slide(job: SlideJob) -> None:
    spec, out_dir, quality = job
    bgr = cv2.cvtColor(render_slide(spec), cv2.COLOR_RGB2BGR)
    write_image(out_dir / f"{spec.slide}.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])


def render_slide(spec: SlideSpec) -> np.ndarray:
    """Paint one slide (RGB uint8) from its spec; deterministic per spec."""
    rng = np.random.default_rng(spec.seed)
    height, width = SURGICAL_SIZE_PX if spec.material == "surgical" else BIOPSY_SIZE_PX
    layers = _tissue_layers(rng, height, width, spec)
    hema, eosin = _concentrations(rng, layers, spec)
    return _stain_to_rgb(rng, hema, eosin, spec.stain_batch)


def _smooth_field(rng: np.random.Generator, height: int, width: int, cell_px: int) -> np.ndarray:
    """Smooth random field in [0, 1] with features about cell_px across."""
    noise = rng.random((max(2, height // cell_px + 2), max(2, width // cell_px + 2)))
    small = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 0.8)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = float(field.min()), float(field.max())
    result: np.ndarray = (field - low) / max(high - low, 1e-6)
    return result


def _tissue_layers(
    rng: np.random.Generator, height: int, width: int, spec: SlideSpec
) -> dict[str, np.ndarray]:
    """Boolean maps of tissue, tumour epithelium, lumen, mucus and medullary sheets."""
    yy = ((np.arange(height, dtype=np.float32) / height - 0.5) * 2) ** 2
    xx = ((np.arange(width, dtype=np.float32) / width - 0.5) * 2) ** 2
    envelope = 1.0 - (yy[:, None] + xx[None, :]) / 2.0
    tissue = (_smooth_field(rng, height, width, 400) * 0.6 + envelope * 0.7) > 0.55
    tumour_zone = tissue & (_smooth_field(rng, height, width, 500) > 0.35)
    p = spec.msi_propensity
    mucus = tumour_zone & (_smooth_field(rng, height, width, 260) > 1.0 - max(0.0, p - 0.3) * 0.7)
    medullary = tumour_zone & ~mucus & (
        _smooth_field(rng, height, width, 300) > 1.0 - max(0.0, p - 0.4) * 0.8
    )
    epithelium, lumen = _glands(rng, tumour_zone & ~mucus & ~medullary, spec.um_per_px)
    return {
        "tissue": tissue,
        "tumour": tumour_zone,
        "epithelium": (epithelium & ~mucus) | medullary,
        "lumen": lumen & ~mucus & ~medullary,
        "mucus": mucus,
        "medullary": medullary,
    }


def _glands(
    rng: np.random.Generator, zone: np.ndarray, um_per_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tumour glands in zone: rings of epithelium around a lumen."""
    height, width = zone.shape
    epithelium = np.zeros((height, width), np.uint8)
    lumen = np.zeros((height, width), np.uint8)
    count = int(zone.sum() * um_per_px**2 / 12000.0)
    ys = rng.integers(0, height, count)
    xs = rng.integers(0, width, count)
    for y, x in zip(ys, xs, strict=True):
        if not zone[y, x]:
            continue
        axes = (int(rng.uniform(40, 110) / um_per_px), int(rng.uniform(30, 70) / um_per_px))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(epithelium, (int(x), int(y)), axes, angle, 0, 360, 1, -1)
        wall = int(rng.uniform(14, 26) / um_per_px)
        inner = (max(1, axes[0] - wall), max(1, axes[1] - wall))
        cv2.ellipse(lumen, (int(x), int(y)), inner, angle, 0, 360, 1, -1)
    return (epithelium > lumen) & zone, (lumen > 0) & zone


def _scatter(
    rng: np.random.Generator, density: np.ndarray, per_px: float, radius_px: int
) -> np.ndarray:
    """Nuclei mask: points drawn with probability density * per_px, dilated to radius_px."""
    height, width = density.shape
    count = int(height * width * per_px)
    ys = rng.integers(0, height, count)
    xs = rng.integers(0, width, count)
    keep = rng.random(count) < density[ys, xs]
    impulses = np.zeros((height, width), np.uint8)
    impulses[ys[keep], xs[keep]] = 1
    size = 2 * max(1, radius_px) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(impulses, kernel).astype(bool)


def _concentrations(
    rng: np.random.Generator, layers: dict[str, np.ndarray], spec: SlideSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin concentration maps (optical density units) of the slide."""
    stroma = layers["tissue"] & ~layers["epithelium"] & ~layers["lumen"] & ~layers["mucus"]
    f32 = {name: mask.astype(np.float32) for name, mask in layers.items()}
    f32["stroma"] = stroma.astype(np.float32)
    scale = 1.0 / spec.um_per_px
    p = spec.msi_propensity
    til_rate = 0.03 + 0.55 * p**2
    height, width = stroma.shape
    lymph_density = f32["stroma"] * 0.05 + (f32["tumour"] + f32["medullary"]) * til_rate
    lymph_density *= (0.5 + _smooth_field(rng, height, width, 300)) * (1.0 - f32["lumen"])
    lymph = _scatter(rng, lymph_density, 0.004 * scale**2, round(3 * scale))
    epi_nuclei = _scatter(rng, f32["epithelium"], 0.012 * scale**2, round(4 * scale))
    stroma_nuclei = _scatter(rng, f32["stroma"], 0.0008 * scale**2, round(3 * scale))
    texture = 0.75 + 0.5 * rng.random((height, width), dtype=np.float32)
    fibres = cv2.GaussianBlur(
        rng.random((height, width), dtype=np.float32), (0, 0), sigmaX=1.5, sigmaY=6.0
    )
    hema = (f32["epithelium"] * 0.12 + f32["mucus"] * 0.10 + f32["stroma"] * 0.03
            + epi_nuclei * 0.45 + stroma_nuclei * 0.4 + lymph * 0.75) * texture
    eosin = (f32["epithelium"] * 0.22 + f32["stroma"] * (0.08 + 0.5 * fibres)
             + f32["mucus"] * 0.05) * texture * (1.0 - 0.6 * lymph)
    hema = cv2.GaussianBlur(hema, (0, 0), 0.7 * scale)
    eosin = cv2.GaussianBlur(eosin, (0, 0), 0.7 * scale)
    return hema, eosin


def stain_vectors(batch: int) -> np.ndarray:
    """The H and E optical-density vectors (rows, unit length) of a staining batch."""
    rng = np.random.default_rng(10_000 + batch)
    vectors = np.abs(REFERENCE_STAIN_OD.T + rng.normal(0.0, 0.07, (2, 3)))
    normed: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normed


def _stain_to_rgb(
    rng: np.random.Generator, hema: np.ndarray, eosin: np.ndarray, batch: int
) -> np.ndarray:
    """Beer-Lambert: RGB = 255 * 10^-(H*h + E*e), with batch-dependent stain strength."""
    vectors = stain_vectors(batch)
    strength = np.random.default_rng(20_000 + batch).uniform(0.8, 1.25, 2)
    rgb = np.empty((*hema.shape, 3), np.uint8)
    for channel in range(3):
        h_weight = -LN10 * float(vectors[0, channel] * strength[0])
        e_weight = -LN10 * float(vectors[1, channel] * strength[1])
        transmitted = cv2.exp(hema * h_weight + eosin * e_weight)
        noise = rng.standard_normal(hema.shape, dtype=np.float32) * 2.0
        value = transmitted * 238.0 + noise
        rgb[..., channel] = np.clip(value, 0, 255).astype(np.uint8)
    return rgb
