"""What makes a training minute count on a small CPU box: precision, schedule, loss, callbacks, resume.

* ``mixed_bfloat16`` where the CPU has bfloat16 instructions (AVX512-BF16 or AMX): convolutions
  run about twice as fast, variables and the softmax stay float32;
* a warm-up then cosine learning rate, so a from-scratch network converges in a fixed budget;
* early stopping that starts watching only after the noisy high-rate phase;
* ``keras.callbacks.BackupAndRestore`` each epoch (weights, optimizer, epoch) and a CSV of every
  epoch's logs, so ``--resume`` continues an interrupted run where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tumor_ai.core.precision import PRECISIONS, cpu_has_bfloat16, resolve_precision  # noqa: F401 - re-exported


def distribution_strategy(name: str):
    """The ``tf.distribute`` strategy asked for; the default strategy trains on one device.

    ``multiworker`` reads the cluster from ``TF_CONFIG`` (see the README), so the same command
    runs on each machine with only ``task.index`` changed.
    """
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_multiworker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit_multiworker(model, dataset, epochs: int, strategy, global_batch_size: int, callbacks: list) -> dict[str, list[float]]:
    """``model.fit`` for ``MultiWorkerMirroredStrategy``, as TensorFlow's custom-loop guide writes it.

    Keras 3's ``fit`` cannot run under that strategy yet (keras-team/keras#20585: it reduces
    per-replica values eagerly and along a scalar's axis 0). This loop runs the same step
    (forward, the compiled loss averaged over the global batch, the compiled optimizer) with
    ``strategy.run`` on every worker; epoch callbacks are called as ``fit`` would. There is no
    per-epoch validation: a multi-worker run trains its whole schedule and is scored at the end.
    """
    import tensorflow as tf

    distributed = strategy.experimental_distribute_dataset(dataset)
    variables = model.trainable_variables

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            loss = tf.nn.compute_average_loss(model.loss(labels, probabilities), global_batch_size=global_batch_size)
        model.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    @tf.function
    def train_step(images, labels):
        return strategy.reduce("SUM", strategy.run(replica_step, args=(images, labels)), axis=None)

    for callback in callbacks:
        callback.set_model(model)
    history: dict[str, list[float]] = {"loss": []}
    for epoch in range(epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        losses = [float(train_step(images, labels)) for images, labels in distributed]
        history["loss"].append(float(np.mean(losses)))
        print(f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}", flush=True)
        for callback in callbacks:
            callback.on_epoch_end(epoch, {"loss": history["loss"][-1]})
    return history


def is_chief() -> bool:
    """Whether this process writes the model: always, except the non-chief workers of a multi-worker run."""
    import json
    import os

    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def warmup_cosine(peak_rate: float, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 to ``peak_rate``, then cosine decay to 0 at ``total_steps``."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=peak_rate,
        warmup_steps=warmup_steps,
    )


def sparse_crossentropy(label_smoothing: float = 0.0, partial_classes: list[int] | None = None, not_class: bool = False):
    """Sparse categorical cross-entropy on probabilities, with label smoothing and, optionally, set-valued labels.

    Keras's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this is the same loss
    with the target mixed as ``(1 - e) * one_hot + e / classes``, without building one-hot labels.
    Targets past the last class are sets (``training.partial.label_sets``): with ``partial_classes``
    the target ``classes`` means "one of these"; with ``not_class`` the target ``classes + 1 + c``
    means "any class but c" (an erased tumour under ``--erased-label not-class``). A set's loss is
    ``-log`` of its classes' total probability.
    """
    from keras import ops

    from .partial import label_sets

    def loss(y_true, y_pred):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        probabilities = ops.cast(y_pred, "float32")
        log_p = ops.log(ops.clip(probabilities, 1e-7, 1.0))
        classes = ops.shape(log_p)[-1]
        known = y_true < classes
        picked = ops.where(known, y_true, ops.zeros_like(y_true))
        nll = -ops.take_along_axis(log_p, ops.expand_dims(picked, 1), axis=1)[:, 0]
        if partial_classes is not None or not_class:
            sets = ops.convert_to_tensor(label_sets(int(log_p.shape[-1]), partial_classes, not_class))
            row = ops.where(known, ops.zeros_like(y_true), y_true - classes)
            mass = ops.sum(probabilities * ops.take(sets, row, axis=0), axis=-1)
            nll = ops.where(known, nll, -ops.log(ops.clip(mass, 1e-7, 1.0)))
        if not label_smoothing:
            return nll
        return (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_p, axis=-1)

    loss.__name__ = "sparse_categorical_crossentropy"
    return loss


def throughput_callback(images_per_epoch: int):
    """A callback that prints images/s each epoch and keeps the timings for the metadata."""
    import keras

    class Throughput(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch_seconds: list[float] = []
            self._started = 0.0

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            seconds = time.perf_counter() - self._started
            self.epoch_seconds.append(seconds)
            print(f"epoch {epoch + 1}: {seconds:.0f} s, {images_per_epoch / seconds:.1f} training images/s", flush=True)

        def summary(self) -> dict:
            if not self.epoch_seconds:
                return {}
            median = float(np.median(self.epoch_seconds))
            return {
                "epochs_timed": len(self.epoch_seconds),
                "median_epoch_seconds": round(median, 1),
                "images_per_second": round(images_per_epoch / median, 1),
            }

    return Throughput()


def run_directory(cache_dir: str | Path, out: str | Path) -> Path:
    """Where a run's backup and epoch log live: one folder per output folder, so runs never mix."""
    return Path(cache_dir) / "runs" / Path(out).resolve().as_posix().strip("/").replace("/", "_")


def run_callbacks(backup_dir: Path, resume: bool) -> list:
    """Per-epoch backup (weights, optimizer state, epoch) and an appending CSV log of every epoch.

    Without ``resume`` an old backup is removed first, so a new run never continues a stale one.
    """
    import shutil

    import keras

    if not resume and backup_dir.exists():
        shutil.rmtree(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.BackupAndRestore(str(backup_dir / "backup"), delete_checkpoint=False),
        keras.callbacks.CSVLogger(str(backup_dir / "history.csv"), append=True),
    ]


def read_history(backup_dir: Path) -> dict[str, list[float]]:
    """Every epoch's logs of a run, resumed parts included, from its CSV log (last write of an epoch wins)."""
    import csv

    path = backup_dir / "history.csv"
    if not path.exists():
        return {}
    rows: dict[int, dict] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch", "").isdigit():
                rows[int(row["epoch"])] = row
    history: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            if key != "epoch" and value not in ("", "NA", None):
                history.setdefault(key, []).append(float(value))
    return history


def early_stopping(patience: int, start_from_epoch: int):
    """Early stopping on validation loss that begins after the high-learning-rate phase, best weights restored."""
    import keras

    return keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, start_from_epoch=start_from_epoch, verbose=1
    )


def machine() -> dict:
    """What the run trained on, for the card's timings: CPU cores and accelerators."""
    import os

    import tensorflow as tf

    return {"cpu_cores": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU"))}


def class_weights(counts: np.ndarray) -> dict[int, float] | None:
    """Balanced weights from (expected) class counts when the largest outnumbers the smallest by more than 10%."""
    counts = np.asarray(counts, dtype=float)
    num_classes = len(counts)
    if counts.min() == 0 or counts.max() / counts.min() <= 1.1:
        return None
    weights = counts.sum() / (num_classes * counts)
    return {index: round(float(weight), 4) for index, weight in enumerate(weights)}
