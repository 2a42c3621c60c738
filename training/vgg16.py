"""Train the VGG16 transfer model on cached features of its frozen blocks.

VGG16 on 2 CPU cores runs ~15 images/s at 160 px, so its frozen blocks 1-4 are run once per
image (and per augmented variant) and cached; stage 1 trains the head on frozen block 5,
stage 2 (``--fine-tune``) trains block 5 and the head at a low learning rate on that cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from training.cnn import TrainResult, class_weights
from training.pipeline import augmentation


def stage_callbacks(args, checkpoint: Path, monitor: str = "val_loss") -> list:
    """Early stopping, best checkpoint and learning-rate cuts for one cached-feature stage."""
    import keras

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=args.patience, restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.3, patience=args.lr_patience, verbose=1),
    ]


def _feature_cache_key(args, dataset, train_idx) -> str:
    weights = args.backbone_weights
    if weights != "imagenet" and Path(weights).is_file():
        weights = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    parts = [dataset.fingerprint(), args.input_size, weights, args.augmented_copies, args.seed, train_idx.tolist()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _run_batches(function, images: np.ndarray, batch_size: int, description: str, augmenter=None) -> np.ndarray:
    import tensorflow as tf
    from tqdm import tqdm

    from tumor_ai.preprocessing import normalize

    outputs = []
    for start in tqdm(range(0, len(images), batch_size), desc=description, unit="batch"):
        batch = images[start : start + batch_size].astype(np.float32)
        if augmenter is not None:
            batch = np.clip(augmenter(tf.constant(batch), training=True).numpy(), 0, 255)
        outputs.append(function(tf.constant(normalize(batch, "vgg16"))).numpy().astype(np.float16))
    return np.concatenate(outputs)


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


def train_vgg16(args, dataset, train_idx, validation_idx, strategy) -> TrainResult:
    """Head on frozen block-5 features, then (``--fine-tune``) block 5 and the head, on cached block-4 features."""
    import keras
    import tensorflow as tf

    from tumor_ai.models import build_vgg16

    size = (args.input_size, args.input_size)
    images = dataset.images[size]
    weights = None if args.backbone_weights == "none" else args.backbone_weights
    with strategy.scope():
        model, metadata = build_vgg16(dataset.labels, input_size=size, weights=weights)
    cache = Path(args.cache_dir) / "features" / f"vgg16_{_feature_cache_key(args, dataset, train_idx)}.npz"
    if cache.exists():
        with np.load(cache) as stored:
            train_features, train_targets, validation_features = stored["train"], stored["targets"], stored["validation"]
    else:
        extractor = keras.Model(model.input, model.get_layer("block4_pool").output)
        extract = tf.function(lambda batch: extractor(batch, training=False))
        variants = [_run_batches(extract, images[train_idx], 32, "block4 features: train")]
        for copy in range(1, args.augmented_copies):
            augmenter = augmentation(seed=args.seed + copy, rand_augment=args.rand_augment)
            variants.append(_run_batches(extract, images[train_idx], 32, f"block4 features: augmented {copy}", augmenter))
        train_features = np.concatenate(variants)
        train_targets = np.tile(dataset.targets[train_idx], args.augmented_copies)
        validation_features = _run_batches(extract, images[validation_idx], 32, "block4 features: validation")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, train=train_features, targets=train_targets, validation=validation_features)
    validation_targets = dataset.targets[validation_idx]
    weights_by_class = class_weights(dataset.targets[train_idx], len(dataset.labels))
    checkpoints = Path(args.cache_dir) / "checkpoints"

    # Stage 1: block 5 frozen, so run it once and train the head on its pooled output.
    with strategy.scope():
        block5 = chained_model(model, "block4_pool", up_to_layer="block5_pool")
        head = chained_model(model, "block5_pool")
        head.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    pooled_train = block5.predict(train_features.astype(np.float32), batch_size=128, verbose=0)
    pooled_validation = block5.predict(validation_features.astype(np.float32), batch_size=128, verbose=0)
    stage1 = head.fit(
        pooled_train,
        train_targets,
        validation_data=(pooled_validation, validation_targets),
        epochs=args.epochs,
        batch_size=args.batch_size,
        class_weight=weights_by_class,
        callbacks=stage_callbacks(args, checkpoints / f"{Path(args.out).name}_head.keras"),
        verbose=2,
    )
    histories = {"stage1": stage1.history}

    if args.fine_tune:
        # Stage 2: block 5 and the head, at a low learning rate, on the cached block-4 features.
        with strategy.scope():
            tail = chained_model(model, "block4_pool")
            tail.compile(
                optimizer=keras.optimizers.Adam(args.fine_tune_learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
        stage2 = tail.fit(
            train_features.astype(np.float32),
            train_targets,
            validation_data=(validation_features.astype(np.float32), validation_targets),
            epochs=args.fine_tune_epochs,
            batch_size=args.batch_size,
            class_weight=weights_by_class,
            callbacks=stage_callbacks(args, checkpoints / f"{Path(args.out).name}_finetune.keras"),
            verbose=1,
        )
        histories["stage2"] = stage2.history

    # Score the whole, flat model end to end on the validation images, as it will be served.
    chosen = len(histories.get("stage2", histories["stage1"])["loss"])
    return TrainResult(model, metadata, histories, weights_by_class, chosen)
