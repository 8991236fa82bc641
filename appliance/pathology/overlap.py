"""Is an evaluation scoring a model on the slides it learnt from?

A model trained on the synthetic cohort names it in its metadata ("synthetic H&E cohort seed 7,
200 patients", models/pathology/train.py). The cohort generator is deterministic, so its slides
can be listed again without painting them, and compared with the labelled slides by name,
patient, label, material and stain batch (a cohort of another seed matches about 6 % of its
slides by chance, the training cohort all of them). Patients the model's split file (next to the
model, ``<name>.splits.csv``) puts in ``test`` are held out and never count as overlap.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance import safejson
from appliance.pathology.labels import table_text
from appliance.pathology.outfolder import RESULTS_JSON
from appliance.synthetic.commands import MAX_PATIENTS
from appliance.synthetic.he import cohort_specs

TRAINING_COHORT = re.compile(r"synthetic H&E cohort seed (\d+), (\d+) patients")
OVERLAP_SHARE = 0.5  # this share of the labelled slides recreated from training: overlap
Fingerprint = tuple[str, str, str, str, str]  # slide, patient, label, material, stain batch


@dataclass(frozen=True)
class Overlap:
    """How many labelled slides are the model's own training or validation slides."""

    model: Path
    cohort: str
    slides: int
    of_slides: int

    def describe(self) -> str:
        """One sentence for the user."""
        return (f"{self.slides} of {self.of_slides} labelled slides are slides the model "
                f"{self.model.name} learnt from ({self.cohort}): its figures on them say nothing")


def find_overlap(
    labels_csv: Path, run_folders: Iterable[Path], patients: set[str] | None = None
) -> Overlap | None:
    """The overlap of the labelled slides (of ``patients``, when given) with the training
    slides of any run's model."""
    labelled = {s for s in _labelled(labels_csv) if patients is None or s[1] in patients}
    if not labelled:
        return None
    named_by: dict[Path, Path] = {}  # each model, and the first run.json naming it
    for folder in run_folders:
        if (model := _model_of(folder)) is not None:
            named_by.setdefault(model, folder / RESULTS_JSON)
    for model, summary in named_by.items():
        cohort, trained = _training_slides(model, summary)
        shared = len(labelled & trained)
        if shared >= OVERLAP_SHARE * len(labelled):
            return Overlap(model, cohort, shared, len(labelled))
    return None


def _labelled(labels_csv: Path) -> set[Fingerprint]:
    """Fingerprints of the labelled slides (empty without a stain_batch column: not synthetic)."""
    rows = list(csv.DictReader(io.StringIO(table_text(labels_csv, "split the cohort"),
                                           newline="")))
    if not rows or "stain_batch" not in rows[0]:
        return set()
    return {(r["slide"], r["patient"], r["label"], r["material"], r["stain_batch"]) for r in rows}


def _model_of(run_folder: Path) -> Path | None:
    """The model file a ``pathology run`` used, from its run.json."""
    summary = run_folder / RESULTS_JSON
    try:
        model = safejson.loads(table_text(summary, "")).get("model")
    except (ValueError, AttributeError):  # none, or not run.json (LabelsError: a ValueError)
        return None
    return Path(model) if isinstance(model, str) and Path(model).is_file() else None


def _training_slides(model: Path, summary: Path) -> tuple[str, set[Fingerprint]]:
    """The cohort a synthetic model names in its metadata and its train/validation slides;
    ModelError (a ValueError) when the file a run's ``summary`` (run.json) names is no model."""
    from appliance.inference.loader import open_session  # noqa: PLC0415  (onnxruntime)
    from appliance.pathology.model import (  # noqa: PLC0415  (as above)
        MAX_MODEL_BYTES,
        MAX_RUN_BYTES,
    )

    # no constants folded: a graph of a few bytes may fold into gigabytes (inference/loader.py)
    session = open_session(model, max_bytes=MAX_MODEL_BYTES, providers=["CPUExecutionProvider"],
                           options=None, fix_hint=f"{summary} names it: evaluate reads its "
                           "metadata for the cohort it learnt from; restore the model that run "
                           "used", run_bytes=MAX_RUN_BYTES)
    found = TRAINING_COHORT.search(session.get_modelmeta().custom_metadata_map.get("training", ""))
    if found is None:
        return "", set()
    if int(found[2]) > MAX_PATIENTS:
        raise ValueError(f"{model}: its metadata names a training cohort of {found[2]} patients, "
                         f"more than `synth he` makes ({MAX_PATIENTS}); not a model of "
                         "this kind")
    held_out = _test_patients(model.with_suffix("").with_suffix(".splits.csv"))
    specs = cohort_specs(int(found[2]), int(found[1]))
    return found[0], {
        (s.slide, s.patient, s.label, s.material, str(s.stain_batch))
        for s in specs if s.patient not in held_out
    }


def _test_patients(splits_csv: Path) -> set[str]:
    if not splits_csv.is_file():
        return set()
    text = table_text(splits_csv, "rebuild the model's split file")
    return {row["patient"] for row in csv.DictReader(io.StringIO(text, newline=""))
            if row.get("split") == "test"}
