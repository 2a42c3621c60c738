"""Cached block-3 features of the frozen VGG16 layers, one file per augmented variant.

Blocks 1-3 hold ~60% of VGG16's work at 224 px and stay frozen, so each image is run through
them once per variant and stored as float16 in a memory-mapped ``.npy``. Variant 0 is the
image itself, variant 1 its mirror image, variants 2+ a seeded ``keras.layers`` augmentation
(training.pipeline; with ``acquisition``, resolution, blur, noise and JPEG quality vary too).
Counterfactual slices (training.counterfactuals: tumours erased, same-size control erasures)
get one more file, so an epoch can swap them in at no extra cost. Files are written batch by
batch with a progress count beside them, so an interrupted extraction continues where it
stopped; a split run and its refit share them. The seconds each file took are kept beside it,
so a run that finds the cache still reports its cost.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

FEATURE_LAYER = "block3_pool"
BATCH = 32


def weights_id(weights: str | None) -> str:
    """A short name for the backbone weights: the file's hash, or 'imagenet' / 'none'."""
    if weights and weights != "imagenet" and Path(weights).is_file():
        return hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    return str(weights)


def variant_images(images: np.ndarray, variant: int, augmenter=None) -> np.ndarray:
    """One batch of ``uint8``-range images as variant ``variant`` sees them (float32, 0..255)."""
    import tensorflow as tf

    batch = images.astype(np.float32)
    if variant == 1:
        return batch[:, :, ::-1]
    if variant >= 2:
        return np.clip(augmenter(tf.constant(batch), training=True).numpy(), 0.0, 255.0)
    return batch


def feature_file(
    cache_dir: Path,
    fingerprint: str,
    size: int,
    crop: str,
    weights: str,
    variant: int | str,
    seed: int,
    preprocessing: str = "vgg16",
    acquisition: bool = False,
) -> Path:
    """Where one variant's features are cached; the name hashes everything that changes them."""
    augmented = isinstance(variant, int) and variant >= 2
    key = [fingerprint, size, crop, weights, variant, seed if augmented else 0, FEATURE_LAYER]
    if preprocessing != "vgg16" or (acquisition and augmented):  # older caches keep their names
        key += [preprocessing, bool(acquisition and augmented)]
    key = json.dumps(key)
    return Path(cache_dir) / "features" / f"vgg16_{hashlib.sha256(key.encode()).hexdigest()[:16]}_v{variant}.npy"


def extract_variant(
    extractor, images: np.ndarray, variant: int, seed: int, path: Path, preprocessing: str, acquisition: bool = False
) -> np.ndarray:
    """Block-3 features of every image for one variant, resuming a partial file; returns a read-only memmap."""
    import tensorflow as tf
    from tqdm import tqdm

    from tumor_ai.core.preprocessing import normalize

    from .pipeline import augmentation

    progress, timing = path.with_suffix(".progress"), path.with_suffix(".seconds")
    done = int(progress.read_text()) if progress.exists() and path.exists() else 0
    spent = float(timing.read_text()) if timing.exists() and done else 0.0
    if done >= len(images) and path.exists():
        return np.load(path, mmap_mode="r")
    shape = (len(images), *extractor.output.shape[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    store = np.lib.format.open_memmap(path, mode="r+" if done else "w+", dtype=np.float16, shape=shape)
    augmenter = augmentation(seed=seed + variant, acquisition=acquisition) if variant >= 2 else None
    if augmenter is not None and done:
        # Replay the random draws of the batches already written, so a resumed file equals an uninterrupted one.
        for start in range(0, done, BATCH):
            augmenter(tf.zeros((len(images[start : start + BATCH]), *images.shape[1:])), training=True)
    run = tf.function(lambda batch: extractor(batch, training=False))
    started = time.perf_counter()
    for start in tqdm(range(done, len(images), BATCH), desc=f"block-3 features, variant {variant}", unit="batch"):
        batch = variant_images(images[start : start + BATCH], variant, augmenter)
        store[start : start + len(batch)] = run(tf.constant(normalize(batch, preprocessing))).numpy().astype(np.float16)
        if (start // BATCH) % 20 == 19 or start + BATCH >= len(images):
            store.flush()
            timing.write_text(f"{spent + time.perf_counter() - started:.1f}")
            progress.write_text(str(min(start + BATCH, len(images))))
    del store
    return np.load(path, mmap_mode="r")


def extraction_seconds(paths: list[Path]) -> float:
    """Seconds spent writing these feature files, whenever that was (0 where no timing was kept)."""
    return round(sum(float(p.with_suffix(".seconds").read_text()) for p in paths if p.with_suffix(".seconds").exists()), 1)


def block3_features(
    model,
    preprocessing: str,
    images: np.ndarray,
    variants: int,
    seed: int,
    cache_dir: Path,
    key: dict,
    acquisition: bool = False,
) -> tuple[list[np.ndarray], list[Path]]:
    """``variants`` arrays ``(images, 28, 28, 256)`` at 224 px (clean, mirrored, then augmented) and their files.

    ``preprocessing`` is the model's own (its metadata's), the one serving applies.
    """
    extractor = feature_extractor(model)
    common = {"seed": seed, "preprocessing": preprocessing, "acquisition": acquisition, **key}
    paths = [feature_file(cache_dir, variant=variant, **common) for variant in range(variants)]
    arrays = [
        extract_variant(extractor, images, variant, seed, path, preprocessing, acquisition) for variant, path in enumerate(paths)
    ]
    return arrays, paths


def feature_extractor(model):
    """The frozen blocks 1-3 as their own model (weights shared)."""
    import keras

    return keras.Model(model.input, model.get_layer(FEATURE_LAYER).output)


def counterfactual_features(
    model, preprocessing: str, pixels: np.ndarray, bank_id: str, cache_dir: Path, key: dict
) -> tuple[np.ndarray, Path]:
    """Block-3 features of a counterfactual bank's slices (``training.counterfactuals``), cached like a variant."""
    path = feature_file(cache_dir, variant=f"counterfactuals-{bank_id}", seed=0, preprocessing=preprocessing, **key)
    return extract_variant(feature_extractor(model), pixels, 0, 0, path, preprocessing), path
