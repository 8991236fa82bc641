"""models/pathology/train.py writes where --out names, never into appliance/shipped/ by
default."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "models" / "pathology" / "train.py"


class _StartedError(Exception):
    """The training began: it would have read (or painted) the cohort, then written."""


def test_train_without_out_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--out` defaulted to appliance/shipped/: `python models/pathology/train.py` wrote the
    tracked msi-vgg19-w16.splits.csv as soon as the cohort was read, and the shipped models
    after training."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds its own folders
    loaded = set(sys.modules)
    spec = importlib.util.spec_from_file_location("pathology_train_under_test", SCRIPT)
    assert spec
    assert spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in {"export", "fit_ood", "vgg"} - loaded:  # its siblings, imported by bare name
        sys.modules.pop(name, None)

    def started(args: object) -> None:
        raise _StartedError(args)

    monkeypatch.setattr(script, "ensure_cohort", started)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as stopped:
        script.main()
    assert stopped.value.code == 2
    assert "--out" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["train.py", "--out", "elsewhere"])
    with pytest.raises(_StartedError) as began:
        script.main()
    assert began.value.args[0].out == Path("elsewhere")
