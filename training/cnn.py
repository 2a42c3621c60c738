"""Train the custom CNN from scratch on decoded, head-cropped images.

The recipe keeps the contract of the project this one replaces (256x256 input, conv blocks with
ReLU and max-pooling, a dense softmax head, Adam, sparse categorical cross-entropy, batch 32,
early stopping on validation loss with patience 3 and the best weights restored) and makes it
converge on 2 CPU cores: residual blocks with batch-norm, bfloat16, warm-up then cosine learning
rate, label smoothing, and early stopping that starts once the high-rate phase is over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import engine
from .counterfactuals import counterfactual_swaps
from .pipeline import make_pipeline
from .recipe import Recipe, RunOptions, TrainResult


@dataclass
class CnnRecipe(Recipe):
    """The custom CNN's recipe: the base recipe's defaults are this network's (256 px, head crop, luminance)."""


def compiled_model(recipe: Recipe, labels: list[str], steps_per_epoch: int, strategy):
    """The registered architecture's network and metadata, compiled with the recipe's schedule and loss.

    The fields an architecture's recipe adds to ``Recipe`` (e.g. a width) are its builder's keyword arguments.
    """
    import keras

    from tumor_ai.model import registry as architectures

    with strategy.scope():
        build = architectures.get(recipe.model).builder()
        model, metadata = build(
            labels, input_size=recipe.size, crop=recipe.crop, preprocessing=recipe.preprocessing, **recipe.own_fields()
        )
        metadata.architecture = recipe.model
        schedule = engine.warmup_cosine(
            recipe.learning_rate, round(recipe.warmup_epochs * steps_per_epoch), recipe.epochs * steps_per_epoch
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=engine.sparse_crossentropy(recipe.label_smoothing),
            metrics=["accuracy"],
        )
    return model, metadata


def train_end_to_end(
    recipe: Recipe, run: RunOptions, dataset, train_idx: np.ndarray, validation_idx: np.ndarray, strategy
) -> TrainResult:
    """Fit every layer of the registered network (the CNN, or any architecture trained from scratch).

    With no validation images (a refit) it runs exactly ``run.stop_after_epochs`` epochs.
    """
    images = dataset.images[recipe.size]
    model, metadata = compiled_model(recipe, dataset.labels, math.ceil(len(train_idx) / recipe.batch_size), strategy)
    swaps, masks = counterfactual_swaps(recipe, dataset, train_idx, run.cache_dir)
    train, epoch_seeds = make_pipeline(
        images[train_idx],
        dataset.targets[train_idx],
        metadata.preprocessing,
        recipe.batch_size,
        True,
        recipe.seed,
        recipe.rand_augment,
        acquisition=recipe.acquisition,
        swaps=swaps,
        masks=masks if recipe.guidance else None,
    )
    fitted = model
    if recipe.guidance:
        from .guidance import GuidedModel

        with strategy.scope():
            fitted = GuidedModel(model, metadata.cam_layer)
            fitted.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    throughput = engine.throughput_callback(len(train_idx))
    epochs = run.stop_after_epochs or recipe.epochs
    if engine.is_multiworker(strategy):
        history = engine.fit_multiworker(model, train, epochs, strategy, recipe.batch_size, [epoch_seeds, throughput])
        return TrainResult(model, metadata, {recipe.model: history}, None, epochs, throughput.summary())
    run_dir = engine.run_directory(run.cache_dir, run.out)
    callbacks = [epoch_seeds, throughput, *engine.run_callbacks(run_dir, run.resume)]
    if recipe.guidance:
        from .guidance import guidance_schedule

        callbacks.insert(0, guidance_schedule(fitted, recipe.guidance, recipe.guidance_from, recipe.guidance_ramp))
    validation = stopping = None
    if len(validation_idx):
        validation, _ = make_pipeline(images[validation_idx], dataset.targets[validation_idx], metadata.preprocessing, 64)
        stopping = engine.early_stopping(recipe.patience, recipe.early_stopping_from)
        callbacks.append(stopping)
    counts = np.bincount(dataset.targets[train_idx], minlength=len(dataset.labels))
    weights = engine.class_weights(swaps.expected_targets(dataset.targets[train_idx], len(dataset.labels)) if swaps else counts)
    fitted.fit(train, validation_data=validation, epochs=epochs, class_weight=weights, callbacks=callbacks, verbose=2)
    history = engine.read_history(run_dir)
    if stopping is not None and stopping.best_weights is not None:
        chosen = stopping.best_epoch + 1
    else:
        chosen = len(history.get("loss", [])) or recipe.epochs
    return TrainResult(model, metadata, {recipe.model: history}, weights, chosen, throughput.summary())
