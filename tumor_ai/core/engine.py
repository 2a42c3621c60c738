"""ONNX Runtime for a model's layers up to its CAM layer; TensorFlow for the rest (``Predictor``'s engine).

Why: on a CPU without bfloat16 (many free Space CPUs have AVX2 only), ONNX Runtime runs the same float32 layers faster
than TensorFlow: on a 2-core Xeon, one answer 1.85x faster for the CNN and 1.25x for the VGG16, with the same classes
and map peaks on all 1,142 validation images (``benchmarks/engine_agreement.py``). The map needs the class
score's gradient at the CAM layer, and ONNX has no gradient ops (tf2onnx refuses ``ReluGrad`` and ``MaxPoolGrad``), so
the model is split there: ONNX Runtime gives the CAM layer's activations, and the layers after it run in TensorFlow
under the ``GradientTape`` they always ran under. The map is the one the TensorFlow path serves and ``tumor-ai
localise`` measured, to float rounding (``tests/test_engine.py`` holds the two to the same classes and map peaks on
the example slices).

The ONNX file is Keras's own export (``Model.export(format="onnx")``, through tf2onnx), made once per model weights
and kept in a cache folder (``TUMOR_AI_ENGINE_CACHE``, default ``~/.cache/tumor-ai/onnx``), so a later start reads it
in a fraction of a second. bfloat16 serving stays in TensorFlow: ONNX Runtime is used where the model computes in
float32 (``resolve_engine``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENGINES = ("auto", "tensorflow", "onnx")
ENGINE_ENV = "TUMOR_AI_ENGINE"
ENGINE_HELP = (
    "what runs the layers up to the CAM layer: 'auto' is ONNX Runtime where the model computes in float32 (no "
    "bfloat16 on this CPU; one answer about 1.25x faster for VGG16, 1.85x for the CNN), else TensorFlow; the map "
    "and the classes are the same (env TUMOR_AI_ENGINE)"
)
CACHE_ENV = "TUMOR_AI_ENGINE_CACHE"
OPSET = 17
log = logging.getLogger("tumor_ai.core.engine")


def onnx_runtime_available() -> bool:
    """Whether ONNX Runtime and the exporter (tf2onnx) are installed; found, not imported (tf2onnx imports
    TensorFlow, which the page does not wait for)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("tf2onnx") is not None


def resolve_engine(name: str, policy: str) -> str:
    """``tensorflow`` or ``onnx`` for an ``--engine`` flag and the model's dtype policy.

    ``auto`` is ONNX Runtime where the model computes in float32 and ONNX Runtime is installed, else TensorFlow
    (bfloat16 stays in TensorFlow, which has the bfloat16 kernels). ``onnx`` asked for outright, with bfloat16 or
    without ONNX Runtime, is one sentence (``ValueError``), never a silent fall-back.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "tensorflow":
        return "tensorflow"
    if name == "onnx":
        if policy != "float32":
            raise ValueError("the onnx engine serves float32 only: pass --precision float32 with --engine onnx")
        if not onnx_runtime_available():
            raise ValueError("the onnx engine needs onnxruntime and tf2onnx: pip install onnxruntime tf2onnx")
        return "onnx"
    return "onnx" if policy == "float32" and onnx_runtime_available() else "tensorflow"


@dataclass
class SplitModel:
    """A model cut at its CAM layer: ``body`` (input to the CAM layer's activations) and ``tail`` (those activations
    to the logits layer's input and the embedding), with the same weights."""

    body: object  # keras.Model
    tail: object  # keras.Model with outputs [penultimate, embedding]


def split_at(model, cam_layer: str, logits_layer: str, embedding_layer: str) -> SplitModel | None:
    """``model`` cut after ``cam_layer``, or ``None`` where the layers after it are not one chain (a skip connection
    past the CAM layer: the tail could not start from its activations alone)."""
    import keras

    names = [layer.name for layer in model.layers]
    cut = model.get_layer(cam_layer)
    after = model.layers[names.index(cam_layer) + 1 :]
    logits = model.get_layer(logits_layer)
    features = keras.Input(tuple(cut.output.shape[1:]), name=f"{cam_layer}_activations")
    made = {id(cut.output): features}
    for layer in after:
        if layer is logits:
            continue
        if not isinstance(layer.input, keras.KerasTensor) or id(layer.input) not in made:
            return None
        made[id(layer.output)] = layer(made[id(layer.input)])
    wanted = [logits.input, model.get_layer(embedding_layer).output]
    if any(id(tensor) not in made for tensor in wanted):
        return None
    body = keras.Model(model.input, cut.output, name=f"{model.name}_body")
    tail = keras.Model(features, [made[id(tensor)] for tensor in wanted], name=f"{model.name}_tail")
    return SplitModel(body, tail)


def cache_folder() -> Path:
    """Where exported ONNX files are kept (``TUMOR_AI_ENGINE_CACHE``, default ``~/.cache/tumor-ai/onnx``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tumor-ai" / "onnx")


def export_key(body) -> str:
    """A name for ``body``'s export that changes with its weights, its layers and the exporter's versions."""
    import onnxruntime
    import tf2onnx

    digest = hashlib.sha256(f"{body.to_json()}|tf2onnx {tf2onnx.__version__}|ort {onnxruntime.__version__}|{OPSET}".encode())
    for weight in body.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:24]


def export_onnx(body, path: Path) -> Path:
    """``body`` as an ONNX file at ``path`` (Keras's export), written whole or not at all."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    spec = tf.TensorSpec([None, *body.input.shape[1:]], tf.float32, name="inputs")
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.onnx")
    converter = logging.getLogger("tf2onnx")
    level = converter.level
    converter.setLevel(logging.WARNING)  # its per-pass INFO lines are not the app's log
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Keras's numpy-2 patch of tf2onnx probes np.object
            body.export(str(partial), format="onnx", input_signature=[spec], opset_version=OPSET, verbose=False)
    finally:
        converter.setLevel(level)
    partial.replace(path)  # two processes exporting the same weights write the same file
    return path


class OnnxBody:
    """An ONNX Runtime session over a model's layers up to its CAM layer: a float32 batch in, the activations out."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per physical core
        options.inter_op_num_threads = 1
        # No spinning between calls: the TensorFlow tail, the MRI check and Gradio need those cores at once.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})[0]


def onnx_body(body, export: bool = True) -> OnnxBody | None:
    """The ONNX Runtime session for ``body``, read from the cache, or exported into it first (``export``; else
    ``None`` when it is not there yet)."""
    path = cache_folder() / f"{body.name}-{export_key(body)}.onnx"
    if not path.exists():
        if not export:
            return None
        log.info("exporting %s to ONNX (%s), once for these weights", body.name, path)
        export_onnx(body, path)
    return OnnxBody(path)
