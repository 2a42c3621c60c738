"""Train the custom CNN from scratch on decoded, head-cropped images.

The recipe keeps the contract of the project this one replaces (256x256 input, conv blocks with
ReLU and max-pooling, a dense softmax head, Adam, sparse categorical cross-entropy, batch 32,
early stopping on validation loss with patience 3 and the best weights restored) and makes it
converge on 2 CPU cores: residual blocks with batch-norm, bfloat16, warm-up then cosine learning
rate, label smoothing, and early stopping that starts once the high-rate phase is over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import engine
from training.pipeline import Swaps, make_pipeline


@dataclass
class TrainResult:
    """What a trainer hands back to ``training.train``: the model and how it got there."""

    model: object
    metadata: object
    histories: dict[str, dict[str, list[float]]]
    class_weights: dict[int, float] | None
    chosen_epochs: int
    throughput: dict = field(default_factory=dict)
    stage_epochs: dict[str, int] = field(default_factory=dict)  # per stage, for a refit of a two-stage recipe


def class_weights(counts: np.ndarray) -> dict[int, float] | None:
    """Balanced weights from (expected) class counts when the largest outnumbers the smallest by more than 10%."""
    counts = np.asarray(counts, dtype=float)
    num_classes = len(counts)
    if counts.min() == 0 or counts.max() / counts.min() <= 1.1:
        return None
    weights = counts.sum() / (num_classes * counts)
    return {index: round(float(weight), 4) for index, weight in enumerate(weights)}


def counterfactual_bank(args, dataset):
    """The ``--masks`` bank for this run's recipe (input size, crop, variants per image, seed, growth), and its id."""
    from training.counterfactuals import bank_id, load_counterfactuals

    if "notumor" not in dataset.labels:
        raise SystemExit("error: --masks relabels erased tumours as 'notumor', and this dataset has no such class folder")
    recipe = (dataset, args.masks, (args.input_size, args.input_size), args.crop, args.counterfactuals_per_image, args.seed)
    grow = tuple(args.erase_grow)
    return load_counterfactuals(*recipe, Path(args.cache_dir), grow), bank_id(*recipe, grow)


def epoch_swaps(args, dataset, bank, pixels: np.ndarray, train_idx: np.ndarray) -> Swaps:
    """What an epoch may swap in for the training images; ``pixels[k]`` stands for the bank's variant ``k``.

    The CNN swaps the variants' pixels, the VGG16 their cached block-3 features.
    """
    erased, control = bank.variants_of(len(dataset.paths))
    print(
        f"counterfactuals: {sum(map(len, erased))} tumour-erased and {sum(map(len, control))} control variants; "
        f"an epoch erases {args.erase:.0%} of masked images and gives {args.control:.0%} of all images a control"
    )
    return Swaps(
        pixels,
        [erased[i] for i in train_idx],
        [control[i] for i in train_idx],
        dataset.labels.index("notumor"),
        args.erase,
        args.control,
    )


def counterfactual_swaps(args, dataset, train_idx: np.ndarray) -> tuple[Swaps | None, np.ndarray | None]:
    """The erased and control variants of the training images and their tumour masks (``--masks``), or ``None``s."""
    if not args.masks:
        return None, None
    bank, _ = counterfactual_bank(args, dataset)
    return epoch_swaps(args, dataset, bank, bank.pixels, train_idx), bank.masks[train_idx]


def train_cnn(args, dataset, train_idx: np.ndarray, validation_idx: np.ndarray, strategy) -> TrainResult:
    """Fit the CNN; with no validation images (a refit) it runs exactly ``args.stop_after_epochs`` epochs."""
    import keras

    from tumor_ai.models import build_cnn

    size = (args.input_size, args.input_size)
    images = dataset.images[size]
    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    with strategy.scope():
        model, metadata = build_cnn(dataset.labels, input_size=size, crop=args.crop, preprocessing=args.preprocessing)
        schedule = engine.warmup_cosine(
            args.learning_rate, round(args.warmup_epochs * steps_per_epoch), args.epochs * steps_per_epoch
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=engine.sparse_crossentropy(args.label_smoothing),
            metrics=["accuracy"],
        )
    swaps, masks = counterfactual_swaps(args, dataset, train_idx)
    guidance = args.guidance
    train, epoch_seeds = make_pipeline(
        images[train_idx],
        dataset.targets[train_idx],
        metadata.preprocessing,
        args.batch_size,
        True,
        args.seed,
        args.rand_augment,
        acquisition=args.acquisition,
        swaps=swaps,
        masks=masks if guidance else None,
    )
    fitted = model
    if guidance:
        from training.guidance import GuidedModel, guidance_schedule

        with strategy.scope():
            fitted = GuidedModel(model, metadata.cam_layer)
            fitted.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    throughput = engine.throughput_callback(len(train_idx))
    epochs = args.stop_after_epochs or args.epochs
    if engine.is_multiworker(strategy):
        history = engine.fit_multiworker(model, train, epochs, strategy, args.batch_size, [epoch_seeds, throughput])
        return TrainResult(model, metadata, {"cnn": history}, None, epochs, throughput.summary())
    run_dir = engine.run_directory(args.cache_dir, args.out)
    callbacks = [epoch_seeds, throughput, *engine.run_callbacks(run_dir, args.resume)]
    if guidance:
        callbacks.insert(0, guidance_schedule(fitted, guidance, args.guidance_from, args.guidance_ramp))
    validation = None
    stopping = None
    if len(validation_idx):
        validation, _ = make_pipeline(images[validation_idx], dataset.targets[validation_idx], metadata.preprocessing, 64)
        stopping = engine.early_stopping(args.patience, args.early_stopping_from)
        callbacks.append(stopping)
    counts = np.bincount(dataset.targets[train_idx], minlength=len(dataset.labels))
    weights = class_weights(swaps.expected_targets(dataset.targets[train_idx], len(dataset.labels)) if swaps else counts)
    fitted.fit(train, validation_data=validation, epochs=epochs, class_weight=weights, callbacks=callbacks, verbose=2)
    history = engine.read_history(run_dir)
    if stopping is not None and stopping.best_weights is not None:
        chosen = stopping.best_epoch + 1
    else:
        chosen = len(history.get("loss", [])) or args.epochs
    return TrainResult(model, metadata, {"cnn": history}, weights, chosen, throughput.summary())
