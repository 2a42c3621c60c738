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

from tumor_ai.model.metadata import PartialRecord

from . import engine
from .counterfactuals import counterfactual_swaps
from .partial import (
    describe,
    load_partial,
    mixed_training_set,
    partial_fraction,
    recipe_loss,
    recipe_weights,
    training_metrics,
)
from .pipeline import make_pipeline
from .recipe import Recipe, RunOptions, TrainResult
from .sequence import SequenceRemap


@dataclass
class CnnRecipe(Recipe):
    """The custom CNN's recipe: the base recipe's defaults are this network's (256 px, head crop, luminance)."""


def compiled_model(recipe: Recipe, labels: list[str], steps_per_epoch: int, strategy):
    """The registered architecture's network and metadata, compiled with the recipe's schedule and loss.

    The fields an architecture's recipe adds to ``Recipe`` (e.g. a width) are its builder's keyword arguments.
    With ``--partial`` the loss also reads the partial "tumour" target (``training.partial``).
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
            loss=recipe_loss(recipe, labels),
            metrics=training_metrics(labels, bool(recipe.partial)),
        )
    return model, metadata


def train_end_to_end(
    recipe: Recipe, run: RunOptions, dataset, train_idx: np.ndarray, validation_idx: np.ndarray, strategy
) -> TrainResult:
    """Fit every layer of the registered network (the CNN, or any architecture trained from scratch).

    With no validation images (a refit) it runs exactly ``run.stop_after_epochs`` epochs.
    """
    images = dataset.images[recipe.size]
    num_classes = len(dataset.labels)
    partial = (
        load_partial(recipe.partial, recipe.size, recipe.crop, partial_fraction(recipe, run), recipe.seed, run.cache_dir)
        if recipe.partial
        else None
    )
    pixels, targets, added = mixed_training_set(
        images[train_idx], dataset.targets[train_idx], partial, num_classes, recipe.partial_repeat
    )
    model, metadata = compiled_model(recipe, dataset.labels, math.ceil(len(targets) / recipe.batch_size), strategy)
    if recipe.start_from:
        from .start import copy_weights

        with strategy.scope():
            copy_weights(model, recipe.start_from)
    if partial is not None:
        metadata.training.partial = PartialRecord.from_dict(describe(partial, added, recipe.partial_repeat))
    swaps, masks = counterfactual_swaps(recipe, dataset, train_idx, run.cache_dir)
    if added and swaps is not None:  # partial slices have no outline: no variants, an empty mask
        swaps = swaps.extended(added)
        masks = np.concatenate([masks, np.zeros((added, *masks.shape[1:]), dtype=masks.dtype)])
    sequence = SequenceRemap(pixels, targets, recipe.sequence, recipe.seed) if recipe.sequence else None
    train, epoch_seeds = make_pipeline(
        pixels,
        targets,
        metadata.preprocessing,
        recipe.batch_size,
        True,
        recipe.seed,
        recipe.rand_augment,
        acquisition=recipe.acquisition,
        swaps=swaps,
        masks=masks if recipe.guidance else None,
        sequence=sequence,
    )
    fitted = model
    if recipe.guidance:
        from .guidance import GuidedModel

        with strategy.scope():
            fitted = GuidedModel(model, metadata.cam_layer)
            fitted.compile(
                optimizer=model.optimizer, loss=model.loss, metrics=training_metrics(dataset.labels, bool(recipe.partial))
            )
    throughput = engine.throughput_callback(len(targets))
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
    counts = np.bincount(dataset.targets[train_idx], minlength=num_classes)
    weights = engine.class_weights(swaps.expected_targets(dataset.targets[train_idx], num_classes) if swaps else counts)
    weights = recipe_weights(recipe, weights, num_classes)
    fitted.fit(train, validation_data=validation, epochs=epochs, class_weight=weights, callbacks=callbacks, verbose=2)
    history = engine.read_history(run_dir)
    if stopping is not None and stopping.best_weights is not None:
        chosen = stopping.best_epoch + 1
    else:
        chosen = len(history.get("loss", [])) or recipe.epochs
    return TrainResult(model, metadata, {recipe.model: history}, weights, chosen, throughput.summary())
