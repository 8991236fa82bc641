"""The models the package ships, as package data found wherever the command runs.

The kiosk's texture grader (``skin-texture-grade.int8.onnx``, its float twin and the rows of its
test split a model release records its self-test on) and the demo pathology tile classifier
(``msi-vgg19-w16.onnx``, its INT8 twin and the patient split it was trained on) live here, so
``appliance analyze``, ``models release`` or ``pathology evaluate`` work from any folder.
Their model cards and build scripts stay in the repository's ``models/`` folder.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

SKIN_MODEL = "skin-texture-grade.int8.onnx"
SKIN_SELF_TEST = "skin-texture-grade.selftest.csv"  # written by models/skin/build_skin_model.py
PATHOLOGY_MODEL = "msi-vgg19-w16.onnx"
PATHOLOGY_SPLITS = "msi-vgg19-w16.splits.csv"

_extracted = ExitStack()  # files unpacked from a zipped install live until the process exits
atexit.register(_extracted.close)


def shipped_path(name: str) -> Path:
    """A file path to the shipped file ``name`` (unpacked once if the package is zipped)."""
    resource = resources.files(__name__).joinpath(name)
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))
