"""SkinClassifier: classifies features, refuses bad models, keeps serving on a bad reload."""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from inference_helpers import (
    LABELS,
    answering_badly_above,
    contract,
    make_table,
    train_tiny,
    write_float,
    write_int8,
)

from appliance.inference.classifier import FeatureError, SkinClassifier
from appliance.inference.contract import ModelError
from appliance.modelbuild.training import TrainedMlp
from appliance.transport.payloads import FEATURE_KEYS, Classification


@dataclass(frozen=True)
class Models:
    folder: Path
    trained: TrainedMlp
    float_path: Path
    int8_path: Path
    features: dict[str, float]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    folder = tmp_path_factory.mktemp("models")
    table = make_table(rows=300)
    trained = train_tiny(table, epochs=20)
    float_path = write_float(folder / "grade.float.onnx", trained, contract())
    int8_path = write_int8(folder / "grade.int8.onnx", float_path, table)
    features = dict(zip(FEATURE_KEYS, map(float, table.features[0]), strict=True))
    return Models(folder, trained, float_path, int8_path, features)


def test_classify_returns_label_probabilities_name_and_version(models: Models) -> None:
    result = SkinClassifier.load(models.int8_path).classify(models.features)
    assert isinstance(result, Classification)
    assert (result.model, result.version) == ("skin-texture-grade", "1.0.0")
    assert set(result.probabilities) == set(LABELS)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert result.label == max(result.probabilities, key=lambda k: result.probabilities[k])


def test_feature_order_comes_from_the_model_not_the_caller(models: Models) -> None:
    classifier = SkinClassifier.load(models.int8_path)
    shuffled = list(models.features.items())
    random.Random(3).shuffle(shuffled)
    assert classifier.classify(dict(shuffled)) == classifier.classify(models.features)


def test_int8_probabilities_track_the_float_model(models: Models) -> None:
    int8 = SkinClassifier.load(models.int8_path).classify(models.features)
    full = SkinClassifier.load(models.float_path).classify(models.features)
    for label in LABELS:
        assert int8.probabilities[label] == pytest.approx(full.probabilities[label], abs=0.05)


def test_missing_or_non_finite_features_are_named(models: Models) -> None:
    classifier = SkinClassifier.load(models.int8_path)
    without = {k: v for k, v in models.features.items() if k != "hill_density_per_mm2"}
    with pytest.raises(FeatureError, match="hill_density_per_mm2"):
        classifier.classify(without)
    with pytest.raises(FeatureError, match="lab_l"):
        classifier.classify(models.features | {"lab_l": float("nan")})


@pytest.mark.parametrize(("answer", "problem"), [
    ("nan", "hold values that are not finite numbers (nan, nan, nan)"),
    ("doubled", "lie outside 0-1 (1.574, 0.213, 0.213)"),
])
def test_outputs_that_are_no_probabilities_give_no_grade(
    tmp_path: Path, answer: str, problem: str
) -> None:
    """A model that loads and warms up but answers some features with NaN (argmax took the
    first NaN's label, each probability clamped to 0) or with values that are no distribution
    (clamped to 0-1): no grade, an error naming the file and what it answered."""
    path = answering_badly_above(tmp_path / f"{answer}.onnx", "1.1.0", 50.0, answer)
    classifier = SkinClassifier.load(path)
    below = dict.fromkeys(FEATURE_KEYS, 30.0)
    assert classifier.classify(below).label == "fine"
    with pytest.raises(ModelError, match=re.escape(problem)) as err:
        classifier.classify({**below, "kime_score": 61.0})
    assert str(path) in str(err.value)
    assert "no grade is given" in str(err.value)


def _corrupt(models: Models, path: Path) -> None:
    path.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(4000)))


def _truncated(models: Models, path: Path) -> None:
    path.write_bytes(models.int8_path.read_bytes()[:3000])


def _empty(models: Models, path: Path) -> None:
    path.write_bytes(b"")


def _no_metadata(models: Models, path: Path) -> None:
    proto = onnx.load_model(str(models.float_path))
    del proto.metadata_props[:]
    onnx.save_model(proto, str(path))


def _unknown_feature(models: Models, path: Path) -> None:
    names = (*FEATURE_KEYS[:-1], "pore_volume_nl")
    write_float(path, models.trained, contract(feature_names=names))


def _wrong_input_width(models: Models, path: Path) -> None:
    write_float(path, models.trained, contract())
    proto = onnx.load_model(str(path))
    proto.metadata_props[[p.key for p in proto.metadata_props].index("feature_names")].value = (
        '["' + '", "'.join(FEATURE_KEYS[:15]) + '"]'
    )
    onnx.save_model(proto, str(path))


def _fixed_batch(models: Models, path: Path) -> None:
    proto = onnx.load_model(str(models.float_path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save_model(proto, str(path))


def _wrong_labels(models: Models, path: Path) -> None:
    write_float(path, models.trained, contract(labels=("fine", "coarse")))


BAD_MODELS: dict[str, tuple[Callable[[Models, Path], None], str]] = {
    "corrupt": (_corrupt, "cannot load it"),
    "truncated": (_truncated, "cannot load it"),
    "empty": (_empty, r"model file is empty \(0 bytes\)"),
    "no metadata": (_no_metadata, "no metadata"),
    "unknown feature": (_unknown_feature, "pore_volume_nl"),
    "wrong input width": (_wrong_input_width, "does not fit its 15 feature_names"),
    "fixed batch": (_fixed_batch, "fixed batch of 4"),
    "wrong label count": (_wrong_labels, "does not fit its 2 labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_is_refused_naming_the_file(models: Models, tmp_path: Path, case: str) -> None:
    make, problem = BAD_MODELS[case]
    path = tmp_path / f"{case.replace(' ', '-')}.onnx"
    make(models, path)
    with pytest.raises(ModelError, match=problem) as err:
        SkinClassifier.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_reload_keeps_the_old_model_serving(models: Models, tmp_path: Path, case: str) -> None:
    classifier = SkinClassifier.load(models.int8_path)
    before = classifier.classify(models.features)
    make, _ = BAD_MODELS[case]
    bad = tmp_path / "update.onnx"
    make(models, bad)
    with pytest.raises(ModelError):
        classifier.reload(bad)
    assert classifier.path == models.int8_path
    assert classifier.classify(models.features) == before


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        SkinClassifier.load(tmp_path / "absent.onnx")


def test_a_folder_or_a_pipe_at_the_model_path_is_named_for_what_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    with pytest.raises(ModelError, match="a folder, not a model file"):
        SkinClassifier.load(folder)
    pipe = tmp_path / "pipe.onnx"
    os.mkfifo(pipe)
    with pytest.raises(ModelError, match=r"not a regular file .*, not a model file"):
        SkinClassifier.load(pipe)


def test_a_link_loop_or_a_link_to_nothing_at_the_model_path_is_named_for_what_it_is(
    tmp_path: Path,
) -> None:
    """Both were "model file not found", for a name that `ls` lists."""
    (tmp_path / "a.onnx").symlink_to("b.onnx")
    (tmp_path / "b.onnx").symlink_to("a.onnx")
    with pytest.raises(ModelError, match=r"a\.onnx: a symbolic link loop \(the link leads back "
                       r"to itself\), not a model file"):
        SkinClassifier.load(tmp_path / "a.onnx")
    (tmp_path / "current.onnx").symlink_to("v2.onnx")
    with pytest.raises(ModelError, match=r"current\.onnx: a symbolic link to v2\.onnx, which "
                       "does not exist, not a model file"):
        SkinClassifier.load(tmp_path / "current.onnx")


def test_good_reload_swaps_to_the_new_version(models: Models, tmp_path: Path) -> None:
    classifier = SkinClassifier.load(models.int8_path)
    newer = write_float(tmp_path / "v2.onnx", models.trained, contract(version="2.0.0"))
    classifier.reload(newer)
    assert classifier.version == "2.0.0"
    assert classifier.classify(models.features).version == "2.0.0"


def test_classify_keeps_answering_while_models_are_reloaded(models: Models, tmp_path: Path) -> None:
    classifier = SkinClassifier.load(models.int8_path)
    newer = write_float(tmp_path / "v2.onnx", models.trained, contract(version="2.0.0"))
    bad = tmp_path / "bad.onnx"
    _corrupt(models, bad)
    versions: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def classify_until_stopped() -> None:
        try:
            while not stop.is_set():
                versions.add(classifier.classify(models.features).version)
        except BaseException as exc:  # any failure in the serving thread fails the test
            errors.append(exc)

    worker = threading.Thread(target=classify_until_stopped)
    worker.start()
    for path in (newer, bad, models.int8_path, bad, newer):
        with contextlib.suppress(ModelError):
            classifier.reload(path)
    stop.set()
    worker.join(timeout=10)
    assert not errors
    assert versions <= {"1.0.0", "2.0.0"}
    assert classifier.version == "2.0.0"
