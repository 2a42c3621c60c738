"""ONNX Runtime serves the layers up to the CAM layer, and the answer is the TensorFlow path's (issue 42).

The unit tests use a small synthetic CNN (its export takes a second); the tests marked slow run both shipped models
on the example slices, once per engine, and need the same classes, MRI verdicts and map peaks, with probabilities
and maps close in value (float rounding: ONNX Runtime sums in another order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumor_ai.core.engine import CACHE_ENV, resolve_engine
from tumor_ai.core.imaging import read_image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "tumor_ai" / "examples").glob("**/*.jpg"))


@pytest.fixture
def engine_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "onnx"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def agree(reference, served) -> None:
    """The same class, MRI verdict and map peak; probabilities and maps equal to float rounding."""
    assert served.label == reference.label
    assert served.is_mri == reference.is_mri
    np.testing.assert_allclose(list(served.probabilities.values()), list(reference.probabilities.values()), atol=1e-4)
    assert np.unravel_index(np.argmax(served.cam), served.cam.shape) == np.unravel_index(
        np.argmax(reference.cam), reference.cam.shape
    )
    np.testing.assert_allclose(served.cam, reference.cam, atol=1e-3)


def test_auto_is_onnx_runtime_for_float32_and_tensorflow_for_bfloat16():
    assert resolve_engine("auto", "float32") == "onnx"
    assert resolve_engine("auto", "mixed_bfloat16") == "tensorflow"
    assert resolve_engine("tensorflow", "float32") == "tensorflow"
    assert resolve_engine("onnx", "float32") == "onnx"


@pytest.mark.parametrize(
    ("name", "policy", "says"),
    [("onnx", "mixed_bfloat16", "float32 only"), ("tflite", "float32", "unknown engine")],
)
def test_an_engine_that_cannot_serve_is_one_sentence(name, policy, says):
    with pytest.raises(ValueError, match=says):
        resolve_engine(name, policy)


def test_onnx_runtime_answers_as_tensorflow(slot_models, example_paths, engine_cache):
    from tumor_ai.core.inference import Predictor

    reference = Predictor.from_source(slot_models["cnn"], precision="float32")
    served = Predictor.from_source(slot_models["cnn"], precision="float32", engine="onnx")
    assert (reference.engine, served.engine) == ("tensorflow", "onnx")
    images = [read_image(path).pixels for path in example_paths.values()]
    for ref, got in zip(reference.predict(images), served.predict(images)):
        agree(ref, got)
    # a chosen class's map, and a batch with a mirror (the flip) go through the same split
    np.testing.assert_allclose(served.explain(images[0], 2), reference.explain(images[0], 2), atol=1e-3)
    flipped = reference.run(reference.prepare(images), test_time_flip=True)
    for key, value in served.run(served.prepare(images), test_time_flip=True).items():
        np.testing.assert_allclose(value, flipped[key], atol=1e-4)
    assert len(list(engine_cache.glob("*.onnx"))) == 1


def test_the_export_is_made_once_and_read_after(slot_models, engine_cache, monkeypatch):
    from tumor_ai.core import engine
    from tumor_ai.core.inference import Predictor

    first = Predictor.from_source(slot_models["vgg16"], precision="float32")
    assert first.use_onnx(export=False) is False  # nothing cached: TensorFlow keeps serving
    assert first.engine == "tensorflow"
    assert first.use_onnx() is True
    exports = []
    monkeypatch.setattr(engine, "export_onnx", lambda body, path: exports.append(path))
    again = Predictor.from_source(slot_models["vgg16"], precision="float32")
    assert again.use_onnx(export=False) is True
    assert exports == [] and again.engine == "onnx"


def test_new_weights_are_a_new_export(slot_models, engine_cache):
    from tumor_ai.core.inference import Predictor

    Predictor.from_source(slot_models["cnn"], precision="float32", engine="onnx")
    changed = Predictor.from_source(slot_models["cnn"], precision="float32")
    changed.model.set_weights([weight * 1.01 for weight in changed.model.get_weights()])
    assert changed.use_onnx(export=False) is False  # the old export is not these weights'
    assert changed.use_onnx() is True
    assert len(list(engine_cache.glob("*.onnx"))) == 2


def test_a_skip_past_the_cam_layer_keeps_tensorflow(engine_cache):
    import keras

    from tumor_ai.core.engine import split_at

    inputs = keras.Input((16, 16, 1))
    early = keras.layers.Conv2D(4, 3, padding="same", name="early")(inputs)
    cam = keras.layers.Conv2D(4, 3, padding="same", name="cam")(early)
    joined = keras.layers.Add(name="skip")([cam, early])  # reads a layer before the CAM layer
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(joined)
    logits = keras.layers.Dense(3, name="predictions")(pooled)
    model = keras.Model(inputs, logits)
    assert split_at(model, "cam", "predictions", "avg_pool") is None
    assert split_at(model, "skip", "predictions", "avg_pool") is not None


@pytest.fixture(scope="module", params=["cnn", "vgg16"])
def both_engines(request, tmp_path_factory):
    from tumor_ai.core import engine
    from tumor_ai.core.inference import Predictor

    folder = ROOT / "models" / request.param
    reference = Predictor.from_source(folder, precision="float32")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "cache_folder", lambda: tmp_path_factory.mktemp("onnx"))
        served = Predictor.from_source(folder, precision="float32", engine="onnx")
    return reference, served


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_the_shipped_models_answer_alike_on_both_engines(both_engines, path):
    reference, served = both_engines
    assert served.engine == "onnx"
    pixels = read_image(path).pixels
    agree(reference.predict([pixels])[0], served.predict([pixels])[0])
