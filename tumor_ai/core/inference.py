"""Serve one model: preprocess as it was trained, then one ``tf.function`` gives probabilities and CAM.

The function is traced once at start (``warm_up``) with a free batch dimension, so no user
pays for tracing and single images and batches share it; there is no ``model.predict`` per
request. Grad-CAM reads the layer that the model's metadata names, on the same forward pass,
using the class *logit* (not the saturated softmax) as the score; the logits and the pooled
features come from the layers the metadata names too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tumor_ai.core.calibration import softmax
from tumor_ai.core.cam import cam_function, place_in_frame
from tumor_ai.core.conformal import plausible
from tumor_ai.core.precision import resolve_precision, with_policy
from tumor_ai.core.preprocessing import Frame, channels, model_input, normalize
from tumor_ai.model.folder import load_model, read_metadata, resolve_source
from tumor_ai.model.metadata import ModelMetadata

if TYPE_CHECKING:
    from tumor_ai.core.mri_check import MriCheck


def configure_threads(intra_op: int = 0, inter_op: int = 1) -> None:
    """Thread pools that suit a small CPU box: all cores inside an op, ops one at a time."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # already initialised: keep what is there


@dataclass
class ModelFiles:
    """What a served model's folder holds besides its weights, read without TensorFlow: enough to describe the model
    (its metadata and its not-an-MRI check) before ``Predictor.from_files`` loads it."""

    source: str  # as given: a folder, a .keras file or hf://USER/REPO[@rev]
    folder: Path  # the local folder it resolved to (a Hub source's download)
    metadata: ModelMetadata
    mri_check: MriCheck | None  # its not-an-MRI check (mri_check.npz), None when it has none

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.labels)


def read_model_files(source: str | Path) -> ModelFiles:
    """A model's folder (one Hub round trip for ``hf://``), metadata and not-an-MRI check, without TensorFlow; one
    sentence (``ModelSourceError``) for a folder that is not there or a file that is damaged."""
    from tumor_ai.core.mri_check import MriCheck
    from tumor_ai.model.metadata import ModelSourceError

    folder = resolve_source(source)
    metadata = read_metadata(folder, source)
    try:
        check = MriCheck.in_folder(folder)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign .npz: one sentence, not a traceback
        if isinstance(error, ModelSourceError):
            raise  # already one sentence: a check newer than this code
        raise ModelSourceError(f"{source}: mri_check.npz is damaged and cannot be read ({type(error).__name__}).") from None
    return ModelFiles(str(source), folder, metadata, check)


@dataclass
class Prediction:
    """One image's result: calibrated probabilities, the CAM (over the whole image), and the MRI check."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    cam: np.ndarray
    is_mri: bool = True
    mri_score: float | None = None
    plausible: list[str] | None = None  # the conformal set at the served level (none without a fitted block, or not an MRI)


class Predictor:
    """A loaded model with its metadata and its compiled forward-and-CAM function."""

    def __init__(
        self, model, metadata: ModelMetadata, source: str = "", warm_up: bool = True, precision: str = "float32"
    ) -> None:
        """``precision`` is a Keras dtype policy (``float32`` or ``mixed_bfloat16``) to compute under."""
        import keras
        import tensorflow as tf

        self.precision = precision
        model = with_policy(model, precision, keep={metadata.logits_layer})
        self.model = model
        self.metadata = metadata
        self.source = source
        self.labels = list(metadata.labels)
        self.temperature = float(metadata.calibration.temperature or 1.0)
        self._cam = cam_function(metadata.cam_method)
        predictions = model.get_layer(metadata.logits_layer)
        outputs = [
            model.get_layer(metadata.cam_layer).output,
            predictions.input,
            model.get_layer(metadata.embedding_layer).output,
        ]
        self._graph = keras.Model(model.input, outputs)
        self._kernel, self._bias = predictions.kernel, predictions.bias
        height, width = metadata.input_size
        self._function = tf.function(
            self._forward,
            input_signature=[
                tf.TensorSpec([None, height, width, channels(metadata.preprocessing)], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
        )
        self._passes = self._function  # batch, classes -> logits, CAM, embedding; use_onnx swaps in ONNX Runtime's body
        self.engine = "tensorflow"
        self.mri_check = None
        self.folder: Path | None = None
        self.batcher = None  # set by share_passes: concurrent predict_one calls run as one batch
        if warm_up:
            self.warm_up()

    @classmethod
    def from_source(
        cls, source: str | Path, warm_up: bool = True, precision: str = "auto", engine: str = "tensorflow"
    ) -> Predictor:
        """Load from a folder, a ``.keras`` file or ``hf://USER/REPO[@rev]`` and compile.

        ``precision``: ``auto`` (bfloat16 where the CPU has it), ``float32`` or ``bfloat16``. ``engine``:
        ``tensorflow`` (the reference path every published figure comes from), ``onnx`` or ``auto``
        (``tumor_ai.core.engine.resolve_engine``).
        """
        return cls.from_files(read_model_files(source), warm_up, precision, engine)

    @classmethod
    def from_files(
        cls, files: ModelFiles, warm_up: bool = True, precision: str = "auto", engine: str = "tensorflow"
    ) -> Predictor:
        """Load the Keras model of files ``read_model_files`` has read (the one step that needs TensorFlow) and compile."""
        from tumor_ai.core.engine import resolve_engine

        source = files.source
        policy = resolve_precision(precision)
        served_by = resolve_engine(engine, policy)  # an impossible --engine is one sentence before the weights load
        model, metadata = load_model(source if source.endswith(".keras") else files.folder)
        predictor = cls(model, metadata, source, warm_up=False, precision=policy)
        predictor.folder = files.folder
        predictor.mri_check = files.mri_check
        if served_by == "onnx":
            predictor.use_onnx()  # traces its own tail: no warm-up of the TensorFlow path is needed
        elif warm_up:
            predictor.warm_up()
        return predictor

    @property
    def name(self) -> str:
        return self.metadata.name

    def _forward(self, batch, classes):
        """Logits, the Grad-CAM of each image's class (``-1``: its top class) and the pooled embedding."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features, penultimate, embedding = self._graph(batch, training=False)
            tape.watch(features)
            logits, score = self._scored(penultimate, classes)
        return self._explained(tape, score, logits, features, embedding)

    def _forward_from_features(self, features, classes):
        """``_forward`` from the CAM layer's activations (the ONNX engine's body gave them): the layers after it, under
        the same tape, so the map is the same."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(features)
            penultimate, embedding = self._tail(features, training=False)
            logits, score = self._scored(penultimate, classes)
        return self._explained(tape, score, logits, features, embedding)

    def _scored(self, penultimate, classes):
        """The logits, and the summed score of each image's class (``-1``: its top class) that the map explains."""
        import tensorflow as tf

        logits = tf.matmul(tf.cast(penultimate, self._kernel.dtype), self._kernel) + self._bias
        top = tf.argmax(logits, axis=1, output_type=tf.int32)
        target = tf.where(classes < 0, top, classes)
        return logits, tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))

    def _explained(self, tape, score, logits, features, embedding):
        import tensorflow as tf

        gradients = tape.gradient(score, features)
        cam = self._cam(tf.cast(features, tf.float32), tf.cast(gradients, tf.float32))
        return logits, cam, tf.cast(embedding, tf.float32)

    def use_onnx(self, export: bool = True) -> bool:
        """Serve the layers up to the CAM layer with ONNX Runtime from now on (``tumor_ai.core.engine``); ``False``
        where the model cannot be cut there (a skip connection past the CAM layer) and TensorFlow keeps serving, or
        where ``export`` is off and no export of these weights is cached yet.

        The first use for these weights exports the ONNX file (seconds; cached after). A request running meanwhile
        finishes on the engine it started on: the engine is swapped whole, once ready.
        """
        import tensorflow as tf

        from tumor_ai.core.engine import onnx_body, split_at

        if self.precision != "float32":
            raise ValueError(f"the onnx engine serves float32 only, not {self.precision}")
        meta = self.metadata
        split = split_at(self.model, meta.cam_layer, meta.logits_layer, meta.embedding_layer)
        if split is None:
            import logging

            logging.getLogger("tumor_ai.core.inference").warning(
                "%s: the layers after %s are not one chain; TensorFlow keeps serving it", self.name, meta.cam_layer
            )
            return False
        body = onnx_body(split.body, export)
        if body is None:
            return False
        self._tail = split.tail
        tail = tf.function(
            self._forward_from_features,
            input_signature=[tf.TensorSpec([None, *split.tail.input.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int32)],
        )
        height, width = meta.input_size
        tail(body(self.prepare([np.zeros((height, width, 3), np.uint8)])), np.full(1, -1, np.int32))  # traced now
        self._passes = lambda batch, classes: tail(body(batch), classes)
        self.engine = "onnx"
        return True

    def warm_up(self) -> None:
        """Trace the function now (start-up), not on the first user's request."""
        height, width = self.metadata.input_size
        self._passes(self.prepare([np.zeros((height, width, 3), np.uint8)]), np.full(1, -1, np.int32))

    def inputs(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Frame]]:
        """RGB ``uint8`` images of any size to the model's normalised batch, and the frame each input covers.

        Crop, resize and normalisation are the ones the metadata records, the same functions
        training used (``tumor_ai.core.preprocessing.model_input``).
        """
        size = tuple(self.metadata.input_size)
        prepared = [model_input(image, size, self.metadata.crop) for image in images]
        batch = normalize(np.stack([pixels for pixels, _ in prepared]), self.metadata.preprocessing)
        return batch, [frame for _, frame in prepared]

    def prepare(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB ``uint8`` images of any size to the model's normalised input batch."""
        return self.inputs(images)[0]

    def run(self, batch: np.ndarray, test_time_flip: bool | None = None, class_index: int | None = None) -> dict[str, np.ndarray]:
        """Raw outputs for a prepared batch: logits, calibrated probabilities, CAMs, embeddings.

        ``test_time_flip`` overrides the metadata's choice; ``False`` suits callers that want only
        the embeddings, which never include the mirror image. ``class_index`` picks the class whose
        evidence the CAM shows (as keras-io's ``pred_index``); ``None`` is each image's top class.
        """
        flip = self.metadata.test_time_flip if test_time_flip is None else test_time_flip
        count = len(batch)
        if flip:
            # The slice and its mirror image in one pass; the logits are averaged, the CAM and embedding are the slice's.
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        classes = np.full(len(batch), -1 if class_index is None else class_index, np.int32)
        passes = self._passes  # one engine for the whole answer, even if use_onnx swaps it meanwhile
        logits, cam, embedding = (tensor.numpy() for tensor in passes(batch, classes))
        if flip:
            own_top = np.argmax(logits[:count], axis=1)
            logits, cam, embedding = (logits[:count] + logits[count:]) / 2, cam[:count], embedding[:count]
            top = np.argmax(logits, axis=1)
            differ = np.flatnonzero(own_top != top) if class_index is None else np.array([], int)
            if differ.size:
                # The CAM explained the slice's own top class; where the mirror changed the verdict, explain the verdict.
                cam = cam.copy()
                cam[differ] = passes(batch[differ], top[differ].astype(np.int32))[1].numpy()
        probabilities = softmax(logits, self.temperature)
        return {"logits": logits, "probabilities": probabilities, "cam": cam, "embedding": embedding}

    def predict(self, images: list[np.ndarray], batch_size: int = 16) -> list[Prediction]:
        """Predictions for RGB ``uint8`` images, run in batches of ``batch_size``."""
        results: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch, frames = self.inputs(chunk)
            outputs = self.run(batch)
            checks = self.mri_check.score(chunk, outputs["embedding"]) if self.mri_check else [(True, None)] * len(chunk)
            for index, (is_mri, score) in enumerate(checks):
                probabilities = outputs["probabilities"][index]
                top = int(np.argmax(probabilities))
                by_label = {label: float(p) for label, p in zip(self.labels, probabilities)}
                results.append(
                    Prediction(
                        label=self.labels[top],
                        confidence=float(probabilities[top]),
                        probabilities=by_label,
                        cam=place_in_frame(outputs["cam"][index], frames[index], chunk[index].shape[:2]),
                        is_mri=is_mri,
                        mri_score=score,
                        plausible=plausible(by_label, self.metadata.conformal) if is_mri else None,  # not an MRI: no set
                    )
                )
        return results

    def explain(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """The Grad-CAM of one class (not only the top one) over the whole image, 0..1."""
        batch, frames = self.inputs([image])
        cam = self.run(batch, class_index=class_index)["cam"][0]
        return place_in_frame(cam, frames[0], image.shape[:2])

    def share_passes(self, max_batch: int = 8, window: float = 0.0) -> None:
        """Let concurrent ``predict_one`` calls (several users at once) share forward passes (``tumor_ai.core.microbatch``)."""
        from tumor_ai.core.microbatch import MicroBatcher

        self.batcher = MicroBatcher(self, max_batch, window)

    def predict_one(self, image: np.ndarray) -> tuple[Prediction, float]:
        """One image and the seconds it took (preprocess + forward + CAM, and any wait to share a batch)."""
        if self.batcher is not None:
            return self.batcher.predict_one(image)
        started = time.perf_counter()
        prediction = self.predict([image])[0]
        return prediction, time.perf_counter() - started


def load_predictors(
    sources: dict[str, str],
    fallbacks: dict[str, str] | None = None,
    precision: str = "auto",
    require_mri_check: bool = True,
    engine: str = "tensorflow",
) -> tuple[dict[str, Predictor], dict[str, str], dict[str, str]]:
    """Load each named source; a Hub source that fails falls back to its local folder, and says why.

    Returns the predictors, the source each one really came from, and for each fallback the
    reason in one line (for the log and the app's banner). A model without its not-an-MRI check
    would give any picture a class, so it is refused unless ``require_mri_check`` is off (the
    operator's ``--allow-no-mri-check``), and then the log, the page and the API say so.
    """
    import logging

    log = logging.getLogger("tumor_ai.core.inference")
    predictors, loaded_from, reasons = {}, {}, {}
    for name, source in sources.items():
        load = partial(Predictor.from_source, precision=precision, engine=engine)
        predictors[name], loaded_from[name] = _with_fallback(name, source, (fallbacks or {}).get(name), load, reasons)
        log.info("loaded %s from %s (%s, %s)", name, loaded_from[name], predictors[name].precision, predictors[name].engine)
        _require_check(name, loaded_from[name], predictors[name].mri_check, require_mri_check)
    return predictors, loaded_from, reasons


def read_served_files(
    sources: dict[str, str], fallbacks: dict[str, str] | None = None, require_mri_check: bool = True
) -> tuple[dict[str, ModelFiles], dict[str, str], dict[str, str]]:
    """``load_predictors`` up to the weights, without TensorFlow: each source's files (``read_model_files``), a Hub
    source that cannot be read falling back to its local folder (and why), and a model without its not-an-MRI check
    refused unless ``require_mri_check`` is off. The app builds its page from these while the weights load."""
    files, read_from, reasons = {}, {}, {}
    for name, source in sources.items():
        files[name], read_from[name] = _with_fallback(name, source, (fallbacks or {}).get(name), read_model_files, reasons)
        _require_check(name, read_from[name], files[name].mri_check, require_mri_check)
    return files, read_from, reasons


def _with_fallback(name: str, source: str, fallback: str | None, load: Callable, reasons: dict[str, str]) -> tuple:
    """``(load(source), source)``; for a Hub source that fails, ``(load(fallback), fallback)`` with the reason in
    ``reasons[name]``. Any other failure is raised."""
    import logging

    try:
        return load(source), source
    except Exception as error:  # noqa: BLE001 - any Hub/network failure: fall back, say why
        if not str(source).startswith("hf://") or not fallback:
            raise
        reasons[name] = f"{source} could not be loaded ({type(error).__name__}: {str(error).splitlines()[0][:160]})"
        logging.getLogger("tumor_ai.core.inference").warning("%s; falling back to %s", reasons[name], fallback)
        return load(fallback), fallback


def _require_check(name: str, source: str, check: MriCheck | None, required: bool) -> None:
    """A model without its not-an-MRI check: refused (one sentence) when ``required``, else served with a warning."""
    import logging

    if check is not None:
        return
    if required:
        from tumor_ai.model.metadata import ModelSourceError

        raise ModelSourceError(no_mri_check(name, source) + " Pass --allow-no-mri-check to serve it anyway.")
    logging.getLogger("tumor_ai.core.inference").warning(
        "%s", no_mri_check(name, source) + " Serving it anyway (--allow-no-mri-check)."
    )


def no_mri_check(name: str, source: str) -> str:
    """The sentence for a model that came without its not-an-MRI check."""
    return (
        f"The {name} model from {source} has no not-an-MRI check (mri_check.npz), so any picture would get a "
        "tumour class; fit one with python -m training.fit_mri_check."
    )
