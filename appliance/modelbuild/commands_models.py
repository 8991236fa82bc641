"""``appliance models build-skin | evaluate | show | skin-table``: the skin texture model.

Heavy imports (torch, onnx, onnxruntime, the synthetic generator) happen inside the handlers,
so `appliance --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.filekind import other_than_a_folder
from appliance.logsafe import escape_controls
from appliance.modelbuild.table_splits import MIN_TABLE_ROWS, SPLITS
from appliance.outfile import replacing_refusal
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.stdout import emit
from appliance.synthetic.arguments import SEED, WORKERS, finite_number, named_path, whole_number

DEFAULT_MODEL = shipped_path(SKIN_MODEL)
MAX_EPOCHS = 10_000  # the shipped model trains 20; more is a typo (and hours of CPU)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give widths like 128,128") from exc
    if not sizes or any(size < 1 or size > 4096 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be 1..4096, e.g. 128,128")
    return sizes


def _semantic_version(text: str) -> str:
    """``--version``: one a release can carry and a kiosk report (``models release`` and the
    result payload take nothing else)."""
    from appliance.updates.manifest import ManifestError, semver_key  # noqa: PLC0415 (pydantic)

    try:
        semver_key(text)
    except ManifestError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or 1.2.3-rc.1)") from None
    return text


def _created_at(text: str) -> str:
    """``--created-at``: a UTC time as the metadata writes it (the shipped model's: ``models
    show``), so that a rebuild can be the same bytes as the model it checks."""
    from appliance.inference.contract import CREATED_AT_FORMAT  # noqa: PLC0415 (pydantic)

    try:  # written back as read: strptime alone takes 2026-1-5T2:4:5Z too
        canonical = datetime.strptime(text, CREATED_AT_FORMAT).strftime(CREATED_AT_FORMAT)
    except ValueError:
        canonical = None
    if canonical != text:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}: give a UTC time as YYYY-MM-DDTHH:MM:SSZ, e.g. 2026-11-26T02:40:05Z"
        )
    return text


def _feature_list(text: str) -> tuple[str, ...]:
    from appliance.transport.payloads import FEATURE_KEYS  # noqa: PLC0415  (pydantic)

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in FEATURE_KEYS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown feature(s) {unknown or text!r}; choose from {', '.join(FEATURE_KEYS)}"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # a model reading one feature twice is refused wherever it is loaded
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} named twice; name each once")
    return names


def _existing_outputs(out_dir: Path, force: bool) -> str | None:
    """Why building into ``out_dir`` would overwrite a model (None when it would not)."""
    from appliance.modelbuild.build import DEFAULT_NAME  # noqa: PLC0415  (torch)

    if kind := other_than_a_folder(out_dir):  # else: "could not write (File exists)"
        return f"--out {out_dir}: {kind}, not a folder; name a folder for the two models"
    if out_dir.resolve() == DEFAULT_MODEL.parent.resolve():
        return f"{out_dir} holds the shipped models; build into a new folder"
    existing = sorted(out_dir.glob(f"{DEFAULT_NAME}.*.onnx")) if out_dir.is_dir() else []
    if existing and not force:
        return f"{existing[0]} exists; pass --force to replace it, or pick a new --out"
    return None


def _build_skin(args: argparse.Namespace) -> int:
    from appliance.inference.contract import ModelError  # noqa: PLC0415  (pydantic)
    from appliance.modelbuild.build import BuildSettings, build_model  # noqa: PLC0415  (torch)
    from appliance.modelbuild.table import TableError, read_table  # noqa: PLC0415  (pyarrow)
    from appliance.transport.payloads import FEATURE_KEYS  # noqa: PLC0415  (pydantic)

    if refusal := _existing_outputs(args.out, args.force):
        print(escape_controls(f"models build-skin: {refusal}"), file=sys.stderr)
        return 2
    try:
        features = args.features or FEATURE_KEYS
        description = args.trained_on or read_table(args.data, features).description
        settings = BuildSettings(
            feature_names=features,
            table=args.data, out_dir=args.out, version=args.version, hidden=args.hidden,
            epochs=args.epochs, seed=args.seed, created_at=args.created_at,
            trained_on=description or f"labelled table {args.data.name} (no description given)",
        )
        built = build_model(settings)
    except (TableError, ModelError, ValueError) as exc:
        print(escape_controls(f"models build-skin: {exc}"), file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk: nothing in --out was replaced
        print("models build-skin: "
              f"--out {escape_controls(str(args.out))}: could not write the models "
              f"({exc.strerror or exc}); the files there are as they were", file=sys.stderr)
        return 1
    for path in (built.int8_path, built.float_path):
        print(escape_controls(f"wrote {path} ({path.stat().st_size} bytes)"))
    print(json.dumps(built.figures, indent=2, sort_keys=True))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from appliance.inference.contract import ModelError  # noqa: PLC0415  (pydantic)
    from appliance.modelbuild.evaluate import evaluate, format_report  # noqa: PLC0415  (ORT)
    from appliance.modelbuild.table import TableError  # noqa: PLC0415  (NumPy)

    try:
        report = evaluate(args.model, args.data, args.split, args.float_model)
    except (ModelError, TableError) as exc:
        print(escape_controls(f"models evaluate: {exc}"), file=sys.stderr)
        return 2
    emit(json.dumps(report.to_json(), indent=2) if args.json else format_report(report))
    return 0


def _describe(runner: Any) -> dict[str, Any]:
    contract = runner.contract
    return {
        "file": str(runner.path),
        "bytes": runner.path.stat().st_size,
        "name": contract.name,
        "version": contract.version,
        "feature_names": list(contract.feature_names),
        "labels": list(contract.labels),
        "trained_on": contract.trained_on,
        "created_at": contract.created_at,
        **contract.extra,
        **contract.figures,
    }


def _show(args: argparse.Namespace) -> int:
    from appliance.inference.contract import ModelError  # noqa: PLC0415  (pydantic)
    from appliance.inference.runner import NAMED_MODEL_HINT, OnnxRunner  # noqa: PLC0415

    try:
        runner = OnnxRunner(args.model, NAMED_MODEL_HINT)
    except ModelError as exc:
        print(escape_controls(f"models show: refused: {exc}"), file=sys.stderr)
        return 2
    emit(json.dumps(_describe(runner), indent=2))
    return 0


def _skin_table(args: argparse.Namespace) -> int:
    from appliance.modelbuild.grades import FrameRow, TableSpec, build_skin_table  # noqa: PLC0415
    from appliance.modelbuild.table import write_table  # noqa: PLC0415  (pyarrow)
    from appliance.synthetic.pool_stop import WorkerDied  # noqa: PLC0415  (cv2)

    if refusal := _table_out_refusal(args.out, args.force):
        print(escape_controls(f"models skin-table: {refusal}"), file=sys.stderr)
        return 2
    spec = TableSpec(rows=args.rows, seed=args.seed, features=args.features,
                     label_noise=args.label_noise)
    drawn: list[FrameRow] = []
    try:
        table = build_skin_table(spec, progress=not args.quiet, workers=args.workers,
                                 drawn=drawn)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM: exit 130 or 143 all the same
        stopped = f"stopped after drawing {len(drawn)} of {spec.rows} frames"
        print(escape_controls(_table_lost(args.out, stopped)), file=sys.stderr)
        raise
    except ValueError as exc:
        print(escape_controls(f"models skin-table: {exc}"), file=sys.stderr)
        return 2
    except WorkerDied as died:
        said = f"{died} after {len(drawn)} of {spec.rows} frames were drawn"
        print(escape_controls(_table_lost(args.out, said)), file=sys.stderr)
        return 1
    try:
        path = write_table(args.out, table)
    except OSError as exc:  # names the file and whether the old one is still there
        print(f"models skin-table: {escape_controls(str(exc))}", file=sys.stderr)
        return 1
    print(escape_controls(
        f"wrote {path} ({len(table)} rows, {path.stat().st_size} bytes): {table.description}"))
    return 0


def _table_lost(out: Path, what_happened: str) -> str:
    """What a table build that ended while drawing its frames kept: nothing (the table is
    written only once every row is drawn: its grades are cut at the tertiles of all rows),
    and the earlier table at ``out``, if any."""
    earlier = f"; the earlier {out} is as it was" if out.exists() else ""
    return (f"models skin-table: {what_happened}, before the table was written: nothing "
            f"kept{earlier}; the same command again draws them all")


def _table_out_refusal(out: Path, force: bool) -> str | None:
    """Why ``--out`` cannot take the table, said before any frame is drawn; None when it can."""
    if out.is_dir():  # --force would not help
        return (f"--out {escape_controls(str(out))}: a folder; name the table file to write "
                f"(e.g. {escape_controls(str(out / 'grades.parquet'))})")
    if out.exists() and not out.is_file():  # nor here: the write would refuse it, after hours
        return (f"--out {escape_controls(str(out))}: not a regular file (a device, a pipe or a "
                "socket), which the table would replace; name a file to write")
    if refusal := replacing_refusal([out], force):
        return refusal
    try:  # a folder that cannot hold the table is said now, not after hours of frames
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out.parent).close()
    except OSError as exc:
        return (f"--out {escape_controls(str(out))}: cannot write in its folder "
                f"({exc.strerror or exc}); choose a writable folder")
    return None


def _register_build(models: Any) -> None:
    build = models.add_parser(
        "build-skin", help="train, export, INT8-quantize and validate the skin texture model"
    )
    build.add_argument("--data", type=named_path, required=True,
                       help="labelled table (.parquet or .csv; `models skin-table` makes one)")
    build.add_argument("--out", type=named_path, required=True,
                       help="output folder (a new one; the shipped model is never overwritten)")
    build.add_argument("--force", action="store_true", help="replace models already in --out")
    build.add_argument("--version", type=_semantic_version, default="1.0.0",
                       help="model version for the metadata, semantic (1.0.0)")
    build.add_argument("--hidden", type=_hidden, default=(128, 128), help="hidden layer widths")
    build.add_argument("--epochs", type=whole_number(1, MAX_EPOCHS), default=20,
                       help=f"training epochs, 1-{MAX_EPOCHS} (20)")
    build.add_argument("--seed", type=SEED, default=0, help="training seed (0)")
    build.add_argument("--trained-on", help="data description (default: the table's own)")
    build.add_argument("--created-at", type=_created_at,
                       help="the metadata's created_at, YYYY-MM-DDTHH:MM:SSZ (default: now); "
                       "the same table, seed and time on one machine give the same bytes")
    build.add_argument("--features", type=_feature_list,
                       help="comma-separated model inputs (default: all measured features)")
    build.set_defaults(handler=_build_skin)


def _register_inspect(models: Any) -> None:
    evaluate = models.add_parser(
        "evaluate", help="accuracy, per-class precision/recall, confusion, INT8/float agreement"
    )
    evaluate.add_argument("model", type=named_path, help="ONNX model (INT8 or float)")
    evaluate.add_argument("--data", type=named_path, required=True, help="labelled table")
    evaluate.add_argument("--split", choices=("all", *SPLITS), default="test",
                          help="rows to use: test (default), another split, or all")
    evaluate.add_argument("--float", dest="float_model", type=named_path,
                          help="float model to compare with (default: the one named inside)")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=_evaluate)
    show = models.add_parser("show", help="check a model and print its contract and figures")
    show.add_argument("model", type=named_path, nargs="?", default=DEFAULT_MODEL,
                      help=f"ONNX model (default: the shipped {DEFAULT_MODEL.name})")
    show.set_defaults(handler=_show)


def _register_table(models: Any) -> None:
    table = models.add_parser(
        "skin-table", help="labelled feature table from synthetic skin (for build-skin)"
    )
    table.add_argument("--out", type=named_path, required=True, help="new .parquet or .csv file")
    table.add_argument("--force", action="store_true", help="replace an existing --out file")
    table.add_argument("--rows", type=whole_number(MIN_TABLE_ROWS, 1_000_000), default=1500,
                       help=f"number of frames, {MIN_TABLE_ROWS}-1000000")
    table.add_argument("--seed", type=SEED, default=0, help="synthetic generator seed")
    table.add_argument("--features", choices=("measured", "truth"), default="measured",
                       help="measured: analyze() each frame; truth: ground truth + noise")
    table.add_argument("--label-noise", type=finite_number(0, 5, "a share of the score's spread"),
                       default=0.25,
                       help="expert disagreement, as a share of the grade score's spread, 0-5")
    table.add_argument("--workers", type=WORKERS, default=1,
                       help="processes rendering frames, 1-256")
    table.add_argument("--quiet", action="store_true", help="no progress bar")
    table.set_defaults(handler=_skin_table)


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add the model commands to ``appliance models``."""
    models = groups["models"]
    _register_build(models)
    _register_inspect(models)
    _register_table(models)
