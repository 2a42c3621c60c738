"""Train the VGG16 transfer model at 224 px: blocks 4-5 and the head fine-tuned on cached block-3 features.

VGG16 on 2 CPU cores runs ~24 images/s through its frozen blocks 1-3 in bfloat16, and those
blocks do ~60% of its work, so their output is computed once per image and variant
(training.features). Stage 1 trains the head on frozen blocks 4-5 (their pooled output on the
clean variant, computed once). Stage 2 trains blocks 4-5 and the head at a low rate with warm-up
and cosine decay; each epoch draws one cached variant per image (clean, mirrored, augmented)
and shifts its feature map by whole cells, which is the image shifted by multiples of 8 px.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from training import engine
from training.cnn import TrainResult, class_weights
from training.features import FEATURE_LAYER, block3_features, extraction_seconds, weights_id
from training.pipeline import epoch_order, epoch_seeds_callback


def chained_model(model, after_layer: str, up_to_layer: str | None = None):
    """The chain of layers after ``after_layer`` (to ``up_to_layer``, or the end) on a new ``Input``.

    Weights are shared with ``model``, so training the chain trains the saved model. VGG16 and its
    head are one plain chain of layers, which is what makes this valid.
    """
    import keras

    names = [layer.name for layer in model.layers]
    stop = names.index(up_to_layer) + 1 if up_to_layer else len(names)
    inputs = keras.Input(shape=model.get_layer(after_layer).output.shape[1:])
    x = inputs
    for layer in model.layers[names.index(after_layer) + 1 : stop]:
        x = layer(x)
    return keras.Model(inputs, x, name=f"after_{after_layer}")


def feature_pipeline(
    variants: list[np.ndarray],
    rows: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    training: bool = False,
    seed: int = 0,
    shift: int = 0,
):
    """``(dataset, epoch variable)`` over cached features; training draws a variant and a shift per image.

    Every draw is a function of ``(seed, epoch, batch)``, so a resumed epoch equals the original.
    """
    import tensorflow as tf

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="feature_epoch")
    count = len(rows)
    dataset = epoch_order(count, seed, epoch) if training else tf.data.Dataset.range(count)
    shape = variants[0].shape[1:]

    def gather(positions: np.ndarray, epoch_value: np.int64) -> np.ndarray:
        rng = np.random.default_rng([seed, int(epoch_value), int(positions[0])])
        chosen = rng.integers(0, len(variants), len(positions)) if training else np.zeros(len(positions), int)
        batch = np.empty((len(positions), *shape), np.float16)
        for index, (row, variant) in enumerate(zip(rows[positions], chosen)):
            features = variants[variant][row]
            if training and shift:
                features = np.roll(features, rng.integers(-shift, shift + 1, 2), axis=(0, 1))
            batch[index] = features
        return batch

    targets_tensor = tf.constant(np.asarray(targets, dtype=np.int32))

    def load(positions):
        batch = tf.numpy_function(gather, [positions, epoch], tf.float16, stateful=False)
        return tf.ensure_shape(batch, [None, *shape]), tf.gather(targets_tensor, positions)

    dataset = dataset.batch(batch_size).map(load, num_parallel_calls=2, deterministic=True)
    return dataset.prefetch(2), epoch


def train_head(args, model, variants, train_idx, validation_idx, targets, weights_by_class) -> dict:
    """Stage 1: the head alone on the pooled output of the frozen blocks 4-5 (clean variant, computed once)."""
    import keras

    frozen = chained_model(model, FEATURE_LAYER, up_to_layer="block5_pool")
    head = chained_model(model, "block5_pool")
    head.compile(
        optimizer=keras.optimizers.Adam(args.head_learning_rate),
        loss=engine.sparse_crossentropy(args.label_smoothing),
        metrics=["accuracy"],
    )

    def pooled(rows):
        dataset, _ = feature_pipeline(variants[:1], rows, targets[rows], 64)
        return frozen.predict(dataset.map(lambda x, y: x), verbose=0)

    validation = (pooled(validation_idx), targets[validation_idx]) if len(validation_idx) else None
    callbacks = [engine.early_stopping(args.patience, 0)] if validation else []
    history = head.fit(
        pooled(train_idx),
        targets[train_idx],
        validation_data=validation,
        epochs=args.head_epochs,
        batch_size=args.batch_size,
        class_weight=weights_by_class,
        callbacks=callbacks,
        verbose=2,
    ).history
    chosen = callbacks[0].best_epoch + 1 if callbacks and callbacks[0].best_weights is not None else args.head_epochs
    return {"history": history, "chosen": chosen}


def train_vgg16(args, dataset, train_idx: np.ndarray, validation_idx: np.ndarray, strategy) -> TrainResult:
    """Stage 1 (head) then stage 2 (blocks 4-5 and head); a refit runs each for the split run's epoch counts."""
    import keras

    from tumor_ai.models import build_vgg16

    size = (args.input_size, args.input_size)
    weights = None if args.backbone_weights == "none" else args.backbone_weights
    model, metadata = build_vgg16(dataset.labels, input_size=size, weights=weights)
    key = {
        "fingerprint": dataset.fingerprint(),
        "size": args.input_size,
        "crop": args.crop,
        "weights": weights_id(weights),
    }
    started = time.perf_counter()
    variants, paths = block3_features(
        model, metadata.preprocessing, dataset.images[size], args.feature_variants, args.seed, Path(args.cache_dir), key
    )
    metadata.training["features"] = {
        "layer": FEATURE_LAYER,
        "variants": args.feature_variants,
        "extraction_seconds": extraction_seconds(paths),
        "seconds_in_this_run": round(time.perf_counter() - started, 1),
        "note": "block-3 features are computed once per image and variant and reused by later runs (the refit)",
    }
    targets = dataset.targets
    weights_by_class = class_weights(np.bincount(targets[train_idx], minlength=len(dataset.labels)))

    head = train_head(args, model, variants, train_idx, validation_idx, targets, weights_by_class)

    tail = chained_model(model, FEATURE_LAYER)
    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    schedule = engine.warmup_cosine(
        args.learning_rate, round(args.warmup_epochs * steps_per_epoch), args.epochs * steps_per_epoch
    )
    tail.compile(
        optimizer=keras.optimizers.Adam(schedule), loss=engine.sparse_crossentropy(args.label_smoothing), metrics=["accuracy"]
    )
    train, epoch = feature_pipeline(variants, train_idx, targets[train_idx], args.batch_size, True, args.seed, args.feature_shift)
    throughput = engine.throughput_callback(len(train_idx))
    run_dir = engine.run_directory(args.cache_dir, args.out)
    callbacks = [epoch_seeds_callback(epoch, None, args.seed), throughput, *engine.run_callbacks(run_dir, args.resume)]
    validation, stopping = None, None
    if len(validation_idx):
        validation, _ = feature_pipeline(variants[:1], validation_idx, targets[validation_idx], 64)
        stopping = engine.early_stopping(args.patience, args.early_stopping_from)
        callbacks.append(stopping)
    epochs = args.stop_after_epochs or args.epochs
    tail.fit(train, validation_data=validation, epochs=epochs, class_weight=weights_by_class, callbacks=callbacks, verbose=2)
    history = engine.read_history(run_dir)
    if stopping is not None and stopping.best_weights is not None:
        chosen = stopping.best_epoch + 1
    else:
        chosen = len(history.get("loss", [])) or epochs
    histories = {"head": head["history"], "fine-tune": history}
    stage_epochs = {"head": head["chosen"], "fine_tune": chosen}
    return TrainResult(model, metadata, histories, weights_by_class, chosen, throughput.summary(), stage_epochs)
