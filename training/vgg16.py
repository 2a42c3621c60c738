"""Train the VGG16 transfer model at 224 px: blocks 4-5 and the head fine-tuned on cached block-3 features.

VGG16 on 2 CPU cores runs ~24 images/s through its frozen blocks 1-3 in bfloat16, and those
blocks do ~60% of its work, so their output is computed once per image and variant
(training.features). Stage 1 trains the head on frozen blocks 4-5 (their pooled output on the
clean variant, computed once). Stage 2 trains blocks 4-5 and the head at a low rate with warm-up
and cosine decay; each epoch draws one cached variant per image (clean, mirrored, augmented)
and shifts its feature map by whole cells, which is the image shifted by multiples of 8 px.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumor_ai.model.metadata import FeatureCache, GuidanceMap, PartialRecord

from . import engine
from .counterfactuals import counterfactual_bank, epoch_swaps
from .features import FEATURE_LAYER, block3_features, counterfactual_features, extraction_seconds, weights_id
from .partial import describe, load_partial, partial_fraction, recipe_loss, recipe_weights, training_metrics
from .pipeline import Swaps, epoch_order, epoch_seeds_callback
from .recipe import Recipe, RunOptions, TrainResult, option


@dataclass
class Vgg16Recipe(Recipe):
    """The VGG16's recipe: 224 px, caffe preprocessing, a short fine-tuning at a low rate, and its feature cache."""

    preprocessings = ("vgg16", "vgg16_luminance")  # three channels, ImageNet-style
    distributable = False  # it reads block-3 features cached on this machine
    fine_tunable = True  # --start-from continues both stages from a model folder's weights (--epochs 0: the head alone)

    epochs: int = 5
    learning_rate: float = 1e-4
    warmup_epochs: float = 0.25
    input_size: int = 224
    crop: str = "none"
    preprocessing: str = "vgg16"
    early_stopping_from: int = 0
    backbone_weights: str = option(
        "imagenet", "'imagenet' (download, the default) or a path to vgg16 no-top weights (.weights.h5), or 'none'"
    )
    head_epochs: int = option(20, "stage 1 (head on frozen blocks): most epochs, stopped early; 0 skips it")
    head_learning_rate: float = option(1e-3, "stage-1 Adam rate")
    feature_variants: int = option(3, "cached block-3 variants per image: clean, mirrored, then seeded augmentations")
    feature_shift: int = option(2, "random shift of the cached feature map in cells of 8 px, per image and epoch")

    def check(self) -> str | None:
        if self.epochs < 0 or self.head_epochs < 0:
            return "--epochs and --head-epochs count epochs: 0 or more"
        if self.epochs == 0 and (self.head_epochs == 0 or not self.start_from):
            return "--epochs 0 trains the head alone: it needs --start-from (the blocks to keep) and --head-epochs 1 or more"
        return super().check()


def chained_model(model, after_layer: str, up_to_layer: str | None = None):
    """The chain of layers after ``after_layer`` (to ``up_to_layer``, or the end) on a new ``Input``.

    Weights are shared with ``model``, so training the chain trains the saved model. VGG16 and its
    head are one plain chain of layers, which is what makes this valid.
    """
    return chained_graph(model, after_layer, up_to_layer)[0]


def chained_graph(model, after_layer: str, up_to_layer: str | None = None, cam_layer: str = "", logits_layer: str = ""):
    """``chained_model``'s model, and (with ``cam_layer``) the guidance graph on the same tensors.

    The graph maps the input to (``cam_layer``'s output, ``logits_layer``'s input, the output), which
    ``training.guidance.GuidedModel`` needs; the shared layers' own ``.output`` names the full model's.
    """
    import keras

    names = [layer.name for layer in model.layers]
    stop = names.index(up_to_layer) + 1 if up_to_layer else len(names)
    inputs = keras.Input(shape=model.get_layer(after_layer).output.shape[1:])
    x, taps = inputs, {}
    for layer in model.layers[names.index(after_layer) + 1 : stop]:
        if layer.name == logits_layer:
            taps["head_input"] = x
        x = layer(x)
        if layer.name == cam_layer:
            taps["cam"] = x
    chain = keras.Model(inputs, x, name=f"after_{after_layer}")
    graph = keras.Model(inputs, [taps["cam"], taps["head_input"], x]) if cam_layer else None
    return chain, graph


@dataclass
class FeatureSwaps:
    """Counterfactual features an epoch swaps in (``training.pipeline.Swaps`` over cached features) and tumour cells.

    ``swaps.pixels`` holds the counterfactual slices' block-3 features; ``cells[i]`` is training
    image ``i``'s tumour mask at the feature grid (28x28 at 224 px), empty where none is known.
    """

    swaps: Swaps | None
    cells: np.ndarray | None


def feature_pipeline(
    variants: list[np.ndarray],
    rows: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    training: bool = False,
    seed: int = 0,
    shift: int = 0,
    counterfactual: FeatureSwaps | None = None,
):
    """``(dataset, epoch variable)`` over cached features; training draws a variant and a shift per image.

    With ``counterfactual``, an epoch also swaps some images for their erased or control variant
    (the same draws as the CNN's ``Swaps``), and with its ``cells`` yields ``((features, cells),
    labels)`` for the guidance: the mask follows the mirror and the shift, and is empty for an
    erased tumour and for the augmented variants (their affine transform is not kept).
    Every draw is a function of ``(seed, epoch, batch)``, so a resumed epoch equals the original.
    """
    import tensorflow as tf

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="feature_epoch")
    count = len(rows)
    dataset = epoch_order(count, seed, epoch) if training else tf.data.Dataset.range(count)
    shape = variants[0].shape[1:]
    swaps = counterfactual.swaps if counterfactual else None
    cells = counterfactual.cells if counterfactual else None
    targets = np.asarray(targets, dtype=np.int32)

    def gather(positions: np.ndarray, epoch_value: np.int64):
        rng = np.random.default_rng([seed, int(epoch_value), int(positions[0])])
        chosen = rng.integers(0, len(variants), len(positions)) if training else np.zeros(len(positions), int)
        batch = np.empty((len(positions), *shape), np.float16)
        labels = targets[positions].copy()
        masks = np.zeros((len(positions), *shape[:2]), np.float32)
        for index, (position, variant) in enumerate(zip(positions, chosen)):
            features = variants[variant][rows[position]]
            mask = cells[position] if cells is not None and variant < 2 else masks[index]
            if variant == 1:
                mask = mask[:, ::-1]
            drawn = swaps.choose(int(position), seed, int(epoch_value)) if swaps is not None and training else None
            if drawn is not None:
                erased, swapped = drawn
                features = swaps.pixels[swapped]
                labels[index] = swaps.erased_target(labels[index]) if erased else labels[index]
                mask = masks[index] if erased or cells is None else cells[position]
            if training and shift:
                offset = rng.integers(-shift, shift + 1, 2)
                features, mask = np.roll(features, offset, axis=(0, 1)), np.roll(mask, offset, axis=(0, 1))
            batch[index] = features
            masks[index] = mask
        return batch, labels, masks

    def load(positions):
        batch, labels, masks = tf.numpy_function(gather, [positions, epoch], [tf.float16, tf.int32, tf.float32], stateful=False)
        batch = tf.ensure_shape(batch, [None, *shape])
        labels = tf.ensure_shape(labels, [None])
        if cells is not None and training:
            return (batch, tf.ensure_shape(masks, [None, *shape[:2]])[..., None]), labels
        return batch, labels

    dataset = dataset.batch(batch_size).map(load, num_parallel_calls=2, deterministic=True)
    return dataset.prefetch(2), epoch


# The map the guidance shapes, and so the one served: LayerCAM at block 4, which ``tumor-ai localise``
# chose for the VGG16 before it was guided (pointing game 0.57 against block 5's lower figure).
GUIDED_MAP = ("block4_conv3", "layer_cam")


def counterfactual_feature_swaps(
    recipe: Recipe, cache_dir: str, dataset, model, metadata, train_idx: np.ndarray, key: dict
) -> tuple[FeatureSwaps | None, Path | None]:
    """The erased and control slices of ``--masks`` as cached block-3 features, and the tumour cells (or ``None``s)."""
    if not recipe.masks:
        return None, None
    bank, identity = counterfactual_bank(recipe, dataset, cache_dir)
    features, path = counterfactual_features(model, metadata.preprocessing, bank.pixels, identity, Path(cache_dir), key)
    swaps = epoch_swaps(recipe, dataset, bank, features, train_idx)
    size = (recipe.input_size, recipe.input_size)
    grid = features.shape[1:3]
    masks = bank.masks[train_idx]
    cells = masks.reshape(len(masks), grid[0], size[0] // grid[0], grid[1], size[1] // grid[1]).any(axis=(2, 4))
    return FeatureSwaps(swaps, cells.astype(np.float32)), path


def pooled_features(frozen, features, cache_dir: str) -> np.ndarray:
    """``frozen`` (blocks 4-5 and the pooling) on every row of ``features`` (clean block-3 features), cached.

    The file is named by the block-3 files read and by the weights of blocks 4-5, so a run started
    from a model folder (other blocks 4-5) gets its own, and the trials of a head study share one.
    """
    import hashlib

    parts = features.parts if isinstance(features, RowConcat) else (features,)
    digest = hashlib.sha256(json.dumps([Path(str(getattr(part, "filename", ""))).name for part in parts]).encode())
    for weights in frozen.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    path = Path(cache_dir) / "features" / f"pooled_{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    dataset, _ = feature_pipeline([features], np.arange(len(features)), np.zeros(len(features), np.int32), 64)
    found = frozen.predict(dataset.map(lambda x, y: x), verbose=0).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, found)
    return found


def train_head(
    recipe: Recipe, model, variants, train_idx, validation_idx, targets, weights_by_class, labels, cache_dir: str = ".cache"
) -> dict:
    """Stage 1: the head alone on the pooled output of the frozen blocks 4-5 (clean variant, computed once and cached)."""
    import keras

    frozen = chained_model(model, FEATURE_LAYER, up_to_layer="block5_pool")
    head = chained_model(model, "block5_pool")
    head.compile(
        optimizer=keras.optimizers.Adam(recipe.head_learning_rate),
        loss=recipe_loss(recipe, labels),
        metrics=["accuracy"],
    )

    every_row = pooled_features(frozen, variants[0], cache_dir)

    def pooled(rows):
        return every_row[rows]

    validation = (pooled(validation_idx), targets[validation_idx]) if len(validation_idx) else None
    callbacks = [engine.early_stopping(recipe.patience, 0)] if validation else []
    history = head.fit(
        pooled(train_idx),
        targets[train_idx],
        validation_data=validation,
        epochs=recipe.head_epochs,
        batch_size=recipe.batch_size,
        class_weight=weights_by_class,
        callbacks=callbacks,
        verbose=2,
    ).history
    chosen = callbacks[0].best_epoch + 1 if callbacks and callbacks[0].best_weights is not None else recipe.head_epochs
    return {"history": history, "chosen": chosen}


def cached_variants(recipe: Recipe, run: RunOptions, dataset, model, metadata, train_idx: np.ndarray):
    """Block-3 features of every image's variants and of the ``--masks`` counterfactuals, from the cache or computed once."""
    key = {
        "fingerprint": dataset.fingerprint(),
        "size": recipe.input_size,
        "crop": recipe.crop,
        "weights": weights_id(backbone_weights(recipe)),
    }
    started = time.perf_counter()
    variants, paths = block3_features(
        model,
        metadata.preprocessing,
        dataset.images[recipe.size],
        recipe.feature_variants,
        recipe.seed,
        Path(run.cache_dir),
        key,
        acquisition=recipe.acquisition,
    )
    counterfactual, counterfactual_path = counterfactual_feature_swaps(
        recipe, run.cache_dir, dataset, model, metadata, train_idx, key
    )
    paths += [counterfactual_path] if counterfactual_path else []
    metadata.training.features = FeatureCache(
        layer=FEATURE_LAYER,
        variants=recipe.feature_variants,
        counterfactual_variants=int(len(counterfactual.swaps.pixels)) if counterfactual else 0,
        extraction_seconds=extraction_seconds(paths),
        seconds_in_this_run=round(time.perf_counter() - started, 1),
        note="block-3 features are computed once per image and variant and reused by later runs (the refit)",
    )
    return variants, counterfactual


class RowConcat:
    """Several row arrays read as one, without copying (the feature caches are memory-mapped and large)."""

    def __init__(self, *parts: np.ndarray) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0, *map(len, parts)])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.offsets[-1]), *self.parts[0].shape[1:])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, row: int) -> np.ndarray:
        part = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return self.parts[part][int(row) - int(self.offsets[part])]


def with_partial_features(recipe: Recipe, run: RunOptions, dataset, model, metadata, training: tuple) -> tuple:
    """``(variants, targets, train rows, counterfactual, class weights)`` with the ``--partial`` slices' features appended.

    Their block-3 features are cached per variant like the dataset's; their rows come after the
    dataset's, with the partial target ``len(labels)`` and no counterfactual variant or tumour cell.
    """
    variants, targets, train_idx, counterfactual, weights = training
    if not recipe.partial:
        return training
    num_classes = len(dataset.labels)
    partial = load_partial(recipe.partial, recipe.size, recipe.crop, partial_fraction(recipe, run), recipe.seed, run.cache_dir)
    key = {
        "fingerprint": partial.fingerprint,
        "size": recipe.input_size,
        "crop": recipe.crop,
        "weights": weights_id(backbone_weights(recipe)),
    }
    extra, _ = block3_features(
        model,
        metadata.preprocessing,
        partial.images,
        recipe.feature_variants,
        recipe.seed,
        Path(run.cache_dir),
        key,
        acquisition=recipe.acquisition,
    )
    rows = len(dataset.paths) + np.tile(partial.train, recipe.partial_repeat)
    metadata.training.partial = PartialRecord.from_dict(describe(partial, len(rows), recipe.partial_repeat))
    variants = [RowConcat(own, more) for own, more in zip(variants, extra)]
    targets = np.concatenate([targets, np.full(len(partial.paths), num_classes, dtype=targets.dtype)])
    if counterfactual is not None:
        cells = counterfactual.cells
        if cells is not None:
            cells = np.concatenate([cells, np.zeros((len(rows), *cells.shape[1:]), dtype=cells.dtype)])
        counterfactual = FeatureSwaps(counterfactual.swaps.extended(len(rows)) if counterfactual.swaps else None, cells)
    return variants, targets, np.concatenate([train_idx, rows]), counterfactual, weights


def backbone_weights(recipe: Recipe) -> str | None:
    return None if recipe.backbone_weights == "none" else recipe.backbone_weights


@dataclass
class Prepared:
    """The network (started from ``--start-from`` where given) and what both stages read: cached features and targets."""

    model: object
    metadata: object
    variants: list
    targets: np.ndarray
    train_idx: np.ndarray  # with the partial slices' rows after the dataset's
    counterfactual: FeatureSwaps | None
    weights_by_class: dict[int, float] | None

    @property
    def training(self) -> tuple:
        return self.variants, self.targets, self.train_idx, self.counterfactual, self.weights_by_class


def prepare(recipe: Recipe, run: RunOptions, dataset, train_idx: np.ndarray) -> Prepared:
    """Build the VGG16 (its weights copied from ``--start-from``) and read or compute every cached feature."""
    from training.networks import build_vgg16

    model, metadata = build_vgg16(
        dataset.labels, input_size=recipe.size, weights=backbone_weights(recipe), preprocessing=recipe.preprocessing
    )
    if recipe.guidance:
        metadata.cam_layer, metadata.cam_method = GUIDED_MAP
        metadata.training.guidance_map = GuidanceMap(layer=GUIDED_MAP[0], method=GUIDED_MAP[1])
    if recipe.start_from:
        start_from_folder(model, metadata, recipe.start_from)
    variants, counterfactual = cached_variants(recipe, run, dataset, model, metadata, train_idx)
    targets = dataset.targets
    counts = np.bincount(targets[train_idx], minlength=len(dataset.labels))
    if counterfactual:
        counts = counterfactual.swaps.expected_targets(targets[train_idx], len(dataset.labels))
    weights = recipe_weights(recipe, engine.class_weights(counts), len(dataset.labels))
    training = (variants, targets, train_idx, counterfactual, weights)
    training = with_partial_features(recipe, run, dataset, model, metadata, training)
    return Prepared(model, metadata, *training)


def train_vgg16(
    recipe: Recipe, run: RunOptions, dataset, train_idx: np.ndarray, validation_idx: np.ndarray, strategy
) -> TrainResult:
    """Stage 1 (head) then stage 2 (blocks 4-5 and head); a refit runs each for the split run's epoch counts."""
    ready = prepare(recipe, run, dataset, train_idx)
    head = {"history": {}, "chosen": 0}
    if recipe.head_epochs:
        head = train_head(
            recipe, ready.model, ready.variants, ready.train_idx, validation_idx, ready.targets, ready.weights_by_class,
            dataset.labels, run.cache_dir,
        )  # fmt: skip
    if not recipe.epochs:  # the head alone, on the blocks of --start-from
        stages = {"head": head["chosen"], "fine_tune": 0}
        return TrainResult(ready.model, ready.metadata, {"head": head["history"]}, ready.weights_by_class, 0, None, stages)
    return fine_tune(recipe, run, ready.model, ready.metadata, dataset.labels, ready.training, validation_idx, head)


def start_from_folder(model, metadata, folder: str) -> None:
    """Copy a VGG16 folder's weights, and keep the map its blocks were shaped for (and served with)."""
    from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata

    from .start import copy_weights

    copy_weights(model, folder)
    source = ModelMetadata.read(Path(folder) / METADATA_FILE)
    metadata.cam_layer, metadata.cam_method = source.cam_layer, source.cam_method
    metadata.training.guidance_map = metadata.training.guidance_map or source.training.guidance_map


def fine_tune(
    recipe: Recipe, run: RunOptions, model, metadata, labels: list[str], training: tuple, validation_idx: np.ndarray, head: dict
) -> TrainResult:
    """Stage 2: blocks 4-5 and the head at a low rate with warm-up and cosine decay, on cached block-3 features."""
    import keras

    variants, targets, train_idx, counterfactual, weights_by_class = training
    tail, graph = chained_graph(model, FEATURE_LAYER, None, metadata.cam_layer, metadata.logits_layer)
    steps_per_epoch = math.ceil(len(train_idx) / recipe.batch_size)
    schedule = engine.warmup_cosine(
        recipe.learning_rate, round(recipe.warmup_epochs * steps_per_epoch), recipe.epochs * steps_per_epoch
    )
    fitted = tail
    if recipe.guidance:
        from .guidance import GuidedModel

        fitted = GuidedModel(tail, metadata.cam_layer, metadata.logits_layer, metadata.cam_method, graph)
    loss = recipe_loss(recipe, labels)
    fitted.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=training_metrics(labels, bool(recipe.partial)))
    if counterfactual and not recipe.guidance:
        counterfactual = FeatureSwaps(counterfactual.swaps, None)
    train, epoch = feature_pipeline(
        variants, train_idx, targets[train_idx], recipe.batch_size, True, recipe.seed, recipe.feature_shift, counterfactual
    )
    throughput = engine.throughput_callback(len(train_idx))
    run_dir = engine.run_directory(run.cache_dir, run.out)
    callbacks = [epoch_seeds_callback(epoch, None, recipe.seed), throughput, *engine.run_callbacks(run_dir, run.resume)]
    if recipe.guidance:
        from .guidance import guidance_schedule

        callbacks.insert(0, guidance_schedule(fitted, recipe.guidance, recipe.guidance_from, recipe.guidance_ramp))
    validation, stopping = None, None
    if len(validation_idx):
        validation, _ = feature_pipeline(variants[:1], validation_idx, targets[validation_idx], 64)
        stopping = engine.early_stopping(recipe.patience, recipe.early_stopping_from)
        callbacks.append(stopping)
    epochs = run.stop_after_epochs or recipe.epochs
    fitted.fit(train, validation_data=validation, epochs=epochs, class_weight=weights_by_class, callbacks=callbacks, verbose=2)
    history = engine.read_history(run_dir)
    if stopping is not None and stopping.best_weights is not None:
        chosen = stopping.best_epoch + 1
    else:
        chosen = len(history.get("loss", [])) or epochs
    histories = {"head": head["history"], "fine-tune": history}
    stage_epochs = {"head": head["chosen"], "fine_tune": chosen}
    return TrainResult(model, metadata, histories, weights_by_class, chosen, throughput.summary(), stage_epochs)
