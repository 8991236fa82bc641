"""Train the demo MSI tile classifier (width-reduced VGG19, GAP head) on the synthetic cohort.

    .venv/bin/python models/pathology/train.py --cohort /tmp/he200 --out appliance/shipped

Makes the cohort if the folder has no labels.csv (200 patients, seed 7), splits PATIENTS (not
slides) into train / validation / test (55 / 15 / 30 %, stratified by label), cuts tiles with the
same code as ``appliance pathology run`` (mask, 256 µm tiles, Macenko), trains with flips,
rotations and brightness jitter, class-balanced sampling and optional frozen-backbone epochs,
picks the slide threshold on the validation patients (Youden), exports float32 and INT8
ONNX with metadata, and fits each file's out-of-distribution guard on the training tiles (slide
cut on the validation slides; fit_ood.py). Writes splits.csv next to the models so evaluation
uses the held-out patients.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from export import export_onnx, quantize_int8
from fit_ood import fit_and_store
from vgg import VGG19, load_imagenet_weights

from appliance.pathology.metrics import auroc, youden_threshold
from appliance.pathology.prepare import TileSettings, prepare_slide, tile_batches
from appliance.pathology.stain import REFERENCE
from appliance.synthetic.he import cohort_specs, write_cohort

MODEL_NAME = "msi-vgg19-w16"


def read_labels(path: Path) -> list[dict[str, str]]:
    """Rows of labels.csv."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def split_patients(rows: list[dict[str, str]], seed: int) -> dict[str, str]:
    """patient -> train / val / test, stratified by label, at patient level."""
    rng = np.random.default_rng(seed)
    labels = {row["patient"]: row["label"] for row in rows}
    split = {}
    for label in sorted(set(labels.values())):
        patients = sorted(p for p, lab in labels.items() if lab == label)
        rng.shuffle(patients)
        n_test, n_val = round(0.30 * len(patients)), round(0.15 * len(patients))
        for i, patient in enumerate(patients):
            split[patient] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return split


def slide_tiles(job: tuple[Path, dict[str, str], TileSettings, int, int]) -> np.ndarray:
    """Up to limit normalised tiles of one slide (N x px x px x 3 uint8), chosen by seed."""
    folder, row, settings, limit, seed = job
    prepared = prepare_slide(folder / f"{row['slide']}.jpg", float(row["um_per_px"]), settings)
    try:
        if len(prepared.tiles) > limit:
            chosen = np.random.default_rng(seed).choice(len(prepared.tiles), limit, replace=False)
            prepared.tiles = [prepared.tiles[i] for i in sorted(chosen)]
        parts = [pixels for _, pixels in tile_batches(prepared, settings, 256)]
    finally:
        prepared.close()
    return np.concatenate(parts)


def tile_dataset(
    folder: Path, rows: list[dict[str, str]], settings: TileSettings, limit: int, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiles, tile labels (1 = MSI) and slide index of each tile, for the given slides."""
    jobs = [(folder, row, settings, limit, index) for index, row in enumerate(rows)]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        tiles = list(pool.map(slide_tiles, jobs))
    labels = [np.full(len(t), row["label"] == "MSI") for t, row in zip(tiles, rows, strict=True)]
    owners = [np.full(len(t), index) for index, t in enumerate(tiles)]
    return np.concatenate(tiles), np.concatenate(labels), np.concatenate(owners)


def cached_tiles(
    args: argparse.Namespace, part: str, rows: list[dict[str, str]], settings: TileSettings,
    limit: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tile_dataset, kept in the cohort folder so runs with other seeds skip the tile cutting."""
    cache = args.cohort / f"tiles-{part}-{settings.tile_px}px-{limit}-split{args.split_seed}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            return saved["tiles"], saved["labels"], saved["owners"]
    tiles, labels, owners = tile_dataset(args.cohort, rows, settings, limit, args.workers)
    np.savez(cache, tiles=tiles, labels=labels, owners=owners)
    return tiles, labels, owners


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, 90-degree rotations and brightness/contrast jitter (N x 3 x H x W, 0-255)."""
    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(3)
    batch = torch.rot90(batch, int(torch.randint(0, 4, (1,), generator=generator)), (2, 3))
    n = batch.shape[0]
    gain = 1 + 0.1 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 2
    shift = 10 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 2
    return (batch * gain + shift).clamp(0, 255)


def to_tensor(tiles: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W (0-255)."""
    return torch.from_numpy(tiles).permute(0, 3, 1, 2).float()


def train_model(
    model: VGG19, tiles: np.ndarray, labels: np.ndarray, args: argparse.Namespace
) -> None:
    """Class-balanced minibatch training; backbone frozen for the first freeze_epochs."""
    generator = torch.Generator().manual_seed(args.seed)
    weights = np.where(labels, 1 / labels.sum(), 1 / (~labels).sum())
    sampler_weights = torch.from_numpy(weights / weights.sum())
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    steps = max(1, len(tiles) // args.batch)
    mean_std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255, torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    for epoch in range(args.epochs):
        frozen = epoch < args.freeze_epochs
        for parameter in model.stage_parameters("features"):
            parameter.requires_grad = not frozen
        model.train()
        started, total = time.time(), 0.0
        for _ in range(steps):
            rows = torch.multinomial(sampler_weights, args.batch, True, generator=generator)
            x = augment(to_tensor(tiles[rows.numpy()]), generator)
            x = (x - mean_std[0]) / mean_std[1]
            loss = loss_fn(model(x), torch.from_numpy(labels[rows.numpy()]).long())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / steps:.4f} "
              f"{'(backbone frozen) ' if frozen else ''}{time.time() - started:.0f}s", flush=True)


def tile_probabilities(model: VGG19, tiles: np.ndarray) -> np.ndarray:
    """MSI probability per tile from the torch model (eval mode)."""
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    out = []
    with torch.no_grad():
        for start in range(0, len(tiles), 256):
            x = (to_tensor(tiles[start : start + 256]) - mean) / std
            out.append(torch.softmax(model(x), 1)[:, 1].numpy())
    return np.concatenate(out)


def slide_scores(probabilities: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Mean tile probability per slide."""
    return np.array([probabilities[owners == i].mean() for i in range(count)])


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=Path("/tmp/he200"))
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--cohort-seed", type=int, default=7)
    # no default: it was appliance/shipped/, so a run without --out (a newcomer's try) wrote
    # the tracked splits.csv at once and the shipped models after training
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the models and splits.csv (appliance/shipped "
                        "replaces the shipped, tracked ones)")
    parser.add_argument("--width", type=float, default=1 / 16)
    parser.add_argument("--tile-px", type=int, default=64)
    parser.add_argument("--tile-um", type=float, default=256.0)
    parser.add_argument("--tiles-per-slide", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--freeze-epochs", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: shared CPUs)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and sampling seed")
    parser.add_argument("--split-seed", type=int, default=0, help="patient split seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--head", choices=["paper", "gap"], default="gap")
    parser.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--imagenet-weights", type=Path, help="torchvision vgg19(_bn) state dict")
    return parser.parse_args()


def ensure_cohort(args: argparse.Namespace) -> list[dict[str, str]]:
    """The cohort's labels, generating the cohort first if the folder has none."""
    labels = args.cohort / "labels.csv"
    if not labels.is_file():
        print(f"generating {args.patients} patients into {args.cohort}", flush=True)
        write_cohort(args.cohort, cohort_specs(args.patients, args.cohort_seed),
                     workers=args.workers)
    return read_labels(labels)


def write_splits(path: Path, split: dict[str, str]) -> None:
    """patient,split CSV."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient", "split"])
        writer.writerows(sorted(split.items()))


def build_model(args: argparse.Namespace) -> VGG19:
    """A fresh VGG19, with ImageNet weights when a file is given."""
    torch.manual_seed(args.seed)
    model = VGG19(width=args.width, head=args.head, batch_norm=args.batch_norm)
    if args.imagenet_weights:
        left = load_imagenet_weights(model, args.imagenet_weights)
        print(f"ImageNet weights loaded; {len(left)} tensors left at init: {left[:4]}...")
    return model


def main() -> int:
    """Train, pick the threshold on validation patients, export float32 and INT8 ONNX."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    rows = ensure_cohort(args)
    split = split_patients(rows, args.split_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_splits(args.out / f"{MODEL_NAME}.splits.csv", split)
    settings = TileSettings(tile_px=args.tile_px, tile_um=args.tile_um)
    train_rows = [r for r in rows if split[r["patient"]] == "train"]
    val_rows = [r for r in rows if split[r["patient"]] == "val"]
    started = time.time()
    tiles, labels, _ = cached_tiles(args, "train", train_rows, settings, args.tiles_per_slide)
    val_tiles, _, val_owner = cached_tiles(args, "val", val_rows, settings, 40)
    print(f"{len(tiles)} training tiles ({labels.mean():.0%} MSI), {len(val_tiles)} validation "
          f"tiles, {time.time() - started:.0f}s", flush=True)
    model = build_model(args)
    train_model(model, tiles, labels, args)
    val_truth = np.array([r["label"] == "MSI" for r in val_rows])
    val_scores = slide_scores(tile_probabilities(model, val_tiles), val_owner, len(val_rows))
    threshold = youden_threshold(val_truth, val_scores)
    print(f"validation: slide AUROC {auroc(val_truth, val_scores):.3f}, threshold {threshold:.3f}")
    export(model.eval(), args, threshold, tiles)
    for suffix in (".onnx", ".int8.onnx"):
        guard = fit_and_store(args.out / f"{MODEL_NAME}{suffix}", tiles, labels, val_tiles,
                              val_owner)
        print(f"out-of-distribution guard of {MODEL_NAME}{suffix}: {guard}")
    return 0


def export(model: VGG19, args: argparse.Namespace, threshold: float, tiles: np.ndarray) -> None:
    """Float32 and INT8 ONNX files with metadata."""
    metadata = {
        "name": MODEL_NAME,
        "version": "1.0.0",
        "labels": json.dumps(["MSS", "MSI"]),
        "tile_px": str(args.tile_px),
        "tile_um": str(args.tile_um),
        "um_per_px": f"{args.tile_um / args.tile_px:.4f}",
        "threshold": f"{threshold:.4f}",
        "stain_reference": json.dumps(REFERENCE.to_metadata()),
        "architecture": f"VGG19 width x{args.width:g}, {args.head} head, "
        f"batch norm {args.batch_norm}",
        "training": f"synthetic H&E cohort seed {args.cohort_seed}, {args.patients} patients, "
        f"{args.epochs} epochs, not for clinical use",
    }
    float_path = export_onnx(model, args.out / f"{MODEL_NAME}.onnx", args.tile_px, metadata)
    rng = np.random.default_rng(0)
    calibration = tiles[rng.choice(len(tiles), min(256, len(tiles)), replace=False)]
    calibration_nchw = calibration.transpose(0, 3, 1, 2).astype(np.float32)
    quantize_int8(float_path, args.out / f"{MODEL_NAME}.int8.onnx", calibration_nchw)
    print(f"wrote {float_path} and its INT8 variant")


if __name__ == "__main__":
    raise SystemExit(main())
