"""Train the custom CNN or the VGG16 transfer model on a ``<class>/`` image folder.

Examples (the commands that produced the shipped models):

    python -m training.train --model cnn --data ../shared/data/brain-tumor-mri/Training --out models/cnn
    python -m training.train --model vgg16 --data ../shared/data/brain-tumor-mri/Training \\
        --out models/vgg16 --backbone-weights ../shared/weights/vgg16_imagenet_notop.weights.h5 --fine-tune

Both hold out a stratified 20% validation split made by duplicate *group* (see training.data),
stop early on validation loss (patience 3, best weights restored) and write into ``--out``:
``model.keras`` (no optimizer state), ``tumor_ai.json`` (metadata), ``split.json``,
``validation_report.json``, ``history.png``, ``confusion_matrix.png`` and the model card.

VGG16 on 2 CPU cores runs ~15 images/s at 160 px, so its frozen blocks 1-4 are run once per
image (and per augmented variant) and cached; stage 1 trains the head on frozen block 5,
stage 2 (``--fine-tune``) trains block 5 and the head at a low learning rate on that cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from training import data as data_lib
from training.metrics import apply_temperature, classification_report, fit_temperature, plot_confusion_matrix

DEFAULTS = {
    "cnn": {"input_size": 256, "epochs": 40, "learning_rate": 1e-3},
    "vgg16": {"input_size": 160, "epochs": 30, "learning_rate": 1e-3},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=["cnn", "vgg16"], required=True, help="architecture to train")
    parser.add_argument("--data", required=True, help="dataset root: one sub-folder of images per class")
    parser.add_argument("--out", required=True, help="output model folder, e.g. models/cnn")
    parser.add_argument("--epochs", type=int, help="maximum epochs (early stopping usually ends sooner); cnn 40, vgg16 30")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate; cnn/vgg16 head 1e-3")
    parser.add_argument("--input-size", type=int, help="square input side in pixels; cnn 256, vgg16 160")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and weights (default 0)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="share held out by group (default 0.2)")
    parser.add_argument("--patience", type=int, default=3, help="early-stopping patience on validation loss (default 3)")
    parser.add_argument(
        "--lr-patience", type=int, default=2, help="epochs without improvement before the learning rate is cut by 0.3 (default 2)"
    )
    parser.add_argument("--rand-augment", action="store_true", help="add keras.layers.RandAugment to the augmentation")
    parser.add_argument(
        "--initial-weights",
        help="cnn only: start from the weights of a trained model folder or .keras file (e.g. to continue "
        "at a lower --learning-rate); the split is the same for the same --seed",
    )
    parser.add_argument(
        "--backbone-weights",
        default="imagenet",
        help="vgg16 only: 'imagenet' (download, the default) or a path to vgg16 no-top weights (.weights.h5)",
    )
    parser.add_argument("--fine-tune", action="store_true", help="vgg16 only: stage 2, fine-tune block 5 at a low rate")
    parser.add_argument("--fine-tune-epochs", type=int, default=15, help="vgg16 stage-2 maximum epochs (default 15)")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-4, help="vgg16 stage-2 Adam rate (default 1e-4)")
    parser.add_argument(
        "--augmented-copies", type=int, default=2, help="vgg16: augmented variants cached per training image (default 2)"
    )
    parser.add_argument(
        "--distribute",
        choices=["none", "mirrored", "multiworker"],
        default="none",
        help="tf.distribute strategy: 'mirrored' for several local GPUs, 'multiworker' for several machines (reads TF_CONFIG)",
    )
    parser.add_argument("--cache-dir", default=".cache", help="where decoded images, features and checkpoints are cached")
    args = parser.parse_args(argv)
    if args.initial_weights and args.model != "cnn":
        parser.error("--initial-weights is for --model cnn; vgg16 starts from --backbone-weights")
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def distribution_strategy(name: str):
    """The ``tf.distribute`` strategy asked for; the default strategy trains on one device."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def class_weights(targets: np.ndarray, num_classes: int) -> dict[int, float] | None:
    """Balanced weights when the largest class outnumbers the smallest by more than 10%."""
    counts = np.bincount(targets, minlength=num_classes).astype(float)
    if counts.min() == 0 or counts.max() / counts.min() <= 1.1:
        return None
    weights = counts.sum() / (num_classes * counts)
    return {index: round(float(weight), 4) for index, weight in enumerate(weights)}


def callbacks(args: argparse.Namespace, checkpoint: Path, monitor: str = "val_loss") -> list:
    import keras

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=args.patience, restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.3, patience=args.lr_patience, verbose=1),
    ]


def train_cnn(args, dataset, train_idx, validation_idx, strategy) -> tuple:
    import keras

    from tumor_ai.models import build_cnn

    size = (args.input_size, args.input_size)
    images = dataset.images[size]
    with strategy.scope():
        model, metadata = build_cnn(dataset.labels, input_size=size)
        if args.initial_weights:
            from tumor_ai.models import load_model

            model.set_weights(load_model(args.initial_weights)[0].get_weights())
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    train = data_lib.make_pipeline(
        images[train_idx], dataset.targets[train_idx], metadata.preprocessing, args.batch_size, True, args.seed, args.rand_augment
    )
    validation = data_lib.make_pipeline(images[validation_idx], dataset.targets[validation_idx], metadata.preprocessing, 64)
    weights = class_weights(dataset.targets[train_idx], len(dataset.labels))
    history = model.fit(
        train,
        validation_data=validation,
        epochs=args.epochs,
        class_weight=weights,
        callbacks=callbacks(args, Path(args.cache_dir) / "checkpoints" / f"{Path(args.out).name}.keras"),
        verbose=1,
    )
    probabilities = model.predict(validation, verbose=0)
    return model, metadata, {"stage1": history.history}, probabilities, weights


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


def train_vgg16(args, dataset, train_idx, validation_idx, strategy) -> tuple:
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
            augmenter = data_lib.augmentation(seed=args.seed + copy, rand_augment=args.rand_augment)
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
        callbacks=callbacks(args, checkpoints / f"{Path(args.out).name}_head.keras"),
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
            callbacks=callbacks(args, checkpoints / f"{Path(args.out).name}_finetune.keras"),
            verbose=1,
        )
        histories["stage2"] = stage2.history

    # Score the whole, flat model end to end on the validation images, as it will be served.
    validation = data_lib.make_pipeline(images[validation_idx], validation_targets, metadata.preprocessing, 32)
    probabilities = model.predict(validation, verbose=0)
    return model, metadata, histories, probabilities, weights_by_class


def plot_history(histories: dict, path: Path, title: str) -> None:
    """Loss and accuracy per epoch for each training stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    offset = 0
    for stage, history in histories.items():
        epochs = np.arange(1, len(history["loss"]) + 1) + offset
        for axis, metric in zip(axes, ("loss", "accuracy")):
            axis.plot(epochs, history[metric], label=f"{stage} train")
            axis.plot(epochs, history[f"val_{metric}"], label=f"{stage} validation", linestyle="--")
            axis.set_xlabel("epoch")
            axis.set_title(metric)
        offset = epochs[-1] if len(epochs) else offset
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import keras

    from tumor_ai.card import write_model_card
    from tumor_ai.models import METADATA_FILE, ModelMetadata, library_versions, save_model_folder

    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    started = time.time()
    size = (args.input_size, args.input_size)
    dataset = data_lib.load_folder(args.data, sizes=[size], cache_dir=Path(args.cache_dir) / "data")
    if len(dataset.labels) < 2:
        raise SystemExit("error: need at least two class folders")
    train_idx, validation_idx, groups = data_lib.split_dataset(dataset, args.validation_fraction, args.seed)
    print(
        f"{len(dataset.paths)} images in {len(np.unique(groups))} duplicate groups; "
        f"train {len(train_idx)}, validation {len(validation_idx)}"
    )
    strategy = distribution_strategy(args.distribute)
    trainer = train_cnn if args.model == "cnn" else train_vgg16
    model, metadata, histories, probabilities, weights = trainer(args, dataset, train_idx, validation_idx, strategy)

    targets = dataset.targets[validation_idx]
    report = classification_report(probabilities, targets, dataset.labels)
    temperature = fit_temperature(probabilities, targets)
    calibrated = classification_report(apply_temperature(probabilities, temperature), targets, dataset.labels)
    metadata.name = out.name
    metadata.training = {
        "command": "python -m training.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "arguments": {key: value for key, value in vars(args).items() if key not in ("data", "out", "cache_dir")},
        "class_weights": weights,
        "epochs_run": {stage: len(history["loss"]) for stage, history in histories.items()},
        "seconds": round(time.time() - started),
        "optimizer": "Adam",
        "loss": "sparse_categorical_crossentropy",
    }
    if args.initial_weights:
        from tumor_ai.models import resolve_source

        initial = ModelMetadata.read(resolve_source(args.initial_weights) / METADATA_FILE)
        metadata.training["initial_weights"] = {"source": args.initial_weights, "command": initial.training.get("command")}
    metadata.dataset = {
        "name": "Brain Tumor MRI Dataset (Nickparvar, Kaggle), Training split",
        "license": "CC0-1.0",
        "root": Path(args.data).name,
        "fingerprint_sha256": dataset.fingerprint(),
        "images": len(dataset.paths),
        "skipped": len(dataset.skipped),
        "duplicate_groups": int(len(np.unique(groups))),
        "split": "stratified by class, whole duplicate groups (exact, re-contrasted and mirrored copies) on one side",
        "validation_fraction": args.validation_fraction,
        "seed": args.seed,
        "train_images": int(len(train_idx)),
        "validation_images": int(len(validation_idx)),
    }
    metadata.metrics = {
        "validation": {key: report[key] for key in ("images", "accuracy", "macro_f1", "ece", "nll")},
        "validation_per_class": report["per_class"],
    }
    metadata.calibration = {
        "temperature": round(temperature, 4),
        "ece_before": report["ece"],
        "ece_after": calibrated["ece"],
        "fitted_on": "validation split",
    }
    metadata.libraries = library_versions()
    save_model_folder(model, metadata, out)
    (out / "split.json").write_text(
        json.dumps(
            {
                "seed": args.seed,
                "validation_fraction": args.validation_fraction,
                "validation": [dataset.paths[i] for i in validation_idx],
            },
            indent=0,
        )
        + "\n"
    )
    (out / "validation_report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_history(histories, out / "history.png", f"{out.name}: training history")
    plot_confusion_matrix(report, out / "confusion_matrix.png", f"{out.name} on the group-aware validation split")
    write_model_card(out)
    print(
        f"validation accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
        f"ECE {report['ece']:.4f} -> {calibrated['ece']:.4f} at T={temperature:.2f}; saved {out}"
    )


if __name__ == "__main__":
    main()
