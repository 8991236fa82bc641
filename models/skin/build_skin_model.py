"""Rebuild the shipped skin texture model: labelled synthetic table -> MLP -> float + INT8 ONNX.

    .venv/bin/python models/skin/build_skin_model.py --out DIR [--new-table] [--features ...]
    .venv/bin/python models/skin/build_skin_model.py --replace-shipped [--new-table] [...]

With ``--out DIR`` (a trial build) it writes into DIR, a folder without a model in it: the
float and INT8 models, the self-test rows, and with --new-table the table it made; it reads
models/data/skin-grades.parquet otherwise. With ``--replace-shipped`` it writes over the
tracked files in place: models/data/skin-grades.parquet (when it is missing, or with
--new-table: remade from 1,200 frames, about 17 minutes on 2 busy cores),
appliance/shipped/skin-texture-grade.float.onnx and .int8.onnx, and the 32 test rows a model
release records its self-test on, skin-texture-grade.selftest.csv (package data). One of the two
must be named: without either it writes nothing (it used to replace the shipped model by
default). It prints the architecture comparison and the figures stored in the model. Same seed,
same table, same machine, same model (up to created_at; another CPU may change the weights'
last bits: README.md, Skin texture grade on the kiosk). To train on REAL labelled measurements
instead, skip this script and run
``appliance models build-skin --data YOUR_TABLE.csv --out DIR --trained-on "..."``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from appliance.modelbuild.build import (
    DEFAULT_NAME,
    BuildSettings,
    build_model,
    compare_architectures,
)
from appliance.modelbuild.grades import TableSpec, build_skin_table
from appliance.modelbuild.table import read_table, write_table
from appliance.shipped import SKIN_SELF_TEST
from appliance.updates.release import self_test_rows

MODELS = Path(__file__).resolve().parent.parent
SHIPPED = MODELS.parent / "appliance" / "shipped"
TABLE = MODELS / "data" / "skin-grades.parquet"
ARCHITECTURES = ((), (32,), (64, 64), (128, 128))
VERSION = "1.1.0"


def _default_features() -> str:
    """Measured features when skin analysis is installed, else ground truth plus noise."""
    return "measured" if importlib.util.find_spec("appliance.skin.analysis") else "truth"


def _out_refusal(out: Path) -> str | None:
    """Why a trial build cannot write into ``out`` (None when it can)."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: not a folder; name a new folder for the models"
    if out.resolve() in (SHIPPED.resolve(), TABLE.parent.resolve()):
        return (f"--out {out} holds the tracked shipped files; build into a new folder, or "
                "pass --replace-shipped (instead of --out) to rebuild them in place")
    existing = sorted(out.glob(f"{DEFAULT_NAME}.*.onnx")) if out.is_dir() else []
    if existing:
        return f"--out {out}: {existing[0].name} is there already; name a new folder"
    return None


def main() -> None:
    """Make the table if needed, compare architectures, build and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path,
                       help="a new folder for a trial build (the shipped files stay)")
    where.add_argument("--replace-shipped", action="store_true",
                       help="write over appliance/shipped/ and models/data/ (tracked files)")
    parser.add_argument("--features", choices=("measured", "truth"), default=_default_features())
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--new-table", action="store_true", help="remake the table")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering frames")
    parser.add_argument("--hidden", default="128,128", help="hidden layer widths")
    args = parser.parse_args()
    if args.out is None and not args.replace_shipped:
        parser.error("name --out DIR (a trial build into a new folder) or --replace-shipped "
                     f"(write over the tracked model in {SHIPPED} and its table in place); "
                     "nothing was written")
    if args.out is not None and (refusal := _out_refusal(args.out)):
        print(f"{parser.prog}: {refusal}", file=sys.stderr)
        sys.exit(2)
    out_dir = SHIPPED if args.replace_shipped else args.out
    fresh = args.new_table or not TABLE.exists()  # a trial's own table goes into its folder
    table_path = out_dir / TABLE.name if fresh and not args.replace_shipped else TABLE
    if args.new_table or not table_path.exists():
        spec = TableSpec(rows=args.rows, seed=args.seed, features=args.features)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_table(table_path, build_skin_table(spec, progress=True, workers=args.workers))
    table = read_table(table_path)
    comparison = compare_architectures(table_path, ARCHITECTURES, seed=args.seed)
    hidden = tuple(int(width) for width in args.hidden.split(","))
    built = build_model(
        BuildSettings(table=table_path, out_dir=out_dir, trained_on=table.description,
                      version=VERSION, hidden=hidden, seed=args.seed)
    )
    self_test = write_table(out_dir / SKIN_SELF_TEST, self_test_rows(table_path))
    print(json.dumps({
        "table": str(table_path), "table_bytes": table_path.stat().st_size, "rows": len(table),
        "self_test": str(self_test),
        "architectures_float_validation": comparison,
        "int8": str(built.int8_path), "int8_bytes": built.int8_path.stat().st_size,
        "float": str(built.float_path), "float_bytes": built.float_path.stat().st_size,
        "figures": built.figures,
    }, indent=2))

if __name__ == "__main__":
    main()
