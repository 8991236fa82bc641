"""Rebuild the shipped skin texture model: labelled synthetic table -> MLP -> float + INT8 ONNX.

    .venv/bin/python models/skin/build_skin_model.py [--new-table] [--features measured|truth]

Writes models/data/skin-grades.parquet (unless it exists; --new-table remakes it from 1,200
frames, about 17 minutes on 2 busy cores),
appliance/shipped/skin-texture-grade.float.onnx and .int8.onnx, and the 32 test rows a model
release records its self-test on, skin-texture-grade.selftest.csv (package data), and prints the
architecture comparison and the figures stored in the model. Same seed, same table, same
machine, same model (up to created_at; another CPU may change the weights' last bits: README.md,
Skin texture grade on the kiosk). To train on REAL labelled measurements instead, skip this
script and run ``appliance models build-skin --data YOUR_TABLE.csv --out DIR --trained-on "..."``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from appliance.modelbuild.build import BuildSettings, build_model, compare_architectures
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


def main() -> None:
    """Make the table if needed, compare architectures, build and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", choices=("measured", "truth"), default=_default_features())
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--new-table", action="store_true", help="remake the table")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering frames")
    parser.add_argument("--hidden", default="128,128", help="hidden layer widths")
    args = parser.parse_args()
    if args.new_table or not TABLE.exists():
        spec = TableSpec(rows=args.rows, seed=args.seed, features=args.features)
        write_table(TABLE, build_skin_table(spec, progress=True, workers=args.workers))
    table = read_table(TABLE)
    comparison = compare_architectures(TABLE, ARCHITECTURES, seed=args.seed)
    hidden = tuple(int(width) for width in args.hidden.split(","))
    built = build_model(
        BuildSettings(table=TABLE, out_dir=SHIPPED, trained_on=table.description,
                      version=VERSION, hidden=hidden, seed=args.seed)
    )
    self_test = write_table(SHIPPED / SKIN_SELF_TEST, self_test_rows(TABLE))
    print(json.dumps({
        "table": str(TABLE), "table_bytes": TABLE.stat().st_size, "rows": len(table),
        "self_test": str(self_test),
        "architectures_float_validation": comparison,
        "int8": str(built.int8_path), "int8_bytes": built.int8_path.stat().st_size,
        "float": str(built.float_path), "float_bytes": built.float_path.stat().st_size,
        "figures": built.figures,
    }, indent=2))


if __name__ == "__main__":
    main()
