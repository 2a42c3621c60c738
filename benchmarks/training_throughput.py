"""Training throughput of the CNN recipe: float32 vs bfloat16, JPEG-per-epoch vs the decode-once cache.

    python benchmarks/training_throughput.py --data ../shared/data/brain-tumor-mri/Training \\
        --out benchmarks/training_throughput.json

Each of the four settings trains the real CNN (256 px, batch 32, the real augmentation) on the
same images for a few short epochs; the first epoch (tracing) is dropped and the median of the
rest is reported as training images/s and as seconds for one epoch of the 4,570-image split.
"JPEG per epoch" decodes, crops and resizes every image in the input pipeline each epoch, as a
plain ``image_dataset_from_directory`` pipeline would; "cache" gathers from the decoded array.
The augmentation alone (Keras's four geometric layers vs the one affine resampling) is timed too.
Shared machines are noisy: compare the ratios, and rerun before trusting a small difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SPLIT_TRAIN_IMAGES = 4570


def jpeg_pipeline(
    root: Path, paths: list[str], targets: np.ndarray, size: tuple[int, int], crop: str, batch_size: int, seed: int
):
    """Decode, crop and resize every file each epoch, then the same augmentation and normalisation."""
    import tensorflow as tf

    from training.pipeline import augmentation
    from tumor_ai.core.imaging import read_image
    from tumor_ai.core.preprocessing import model_input

    files = np.array([str(root / path) for path in paths])
    augmenter = augmentation(seed)

    def decode(path):
        return model_input(read_image(path.decode()).pixels, size, crop)[0]

    def load(path, label):
        image = tf.numpy_function(decode, [path], tf.uint8)
        return tf.ensure_shape(image, [*size, 3]), label

    dataset = tf.data.Dataset.from_tensor_slices((files, targets)).shuffle(len(files), seed=seed)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)

    def transform(batch, labels):
        return augmenter(tf.cast(batch, tf.float32), training=True) / 255.0, labels

    return dataset.map(transform, num_parallel_calls=1).prefetch(tf.data.AUTOTUNE)


def time_epochs(precision: str, dataset, labels: list[str], size: tuple[int, int], epochs: int, images: int) -> list[float]:
    """Seconds per epoch of the real CNN on ``dataset``; the first (tracing) epoch is dropped."""
    import keras

    from training import engine
    from training.networks import build_cnn

    keras.mixed_precision.set_dtype_policy(engine.PRECISIONS[precision])
    try:
        model, _ = build_cnn(labels, input_size=size)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=engine.sparse_crossentropy(0.1))
        timer = engine.throughput_callback(images)
        model.fit(dataset, epochs=epochs + 1, callbacks=[timer], verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return timer.epoch_seconds[1:]


def time_augmentation(size: tuple[int, int], repeats: int = 5) -> dict[str, float]:
    """Median ms per batch of 32 for Keras's four geometric layers vs the one affine resampling."""
    import keras
    import tensorflow as tf

    from training.pipeline import random_affine_layer

    batch = tf.constant(np.random.default_rng(0).integers(0, 256, (32, *size, 3)).astype(np.float32))
    keras_layers = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=0),
            keras.layers.RandomRotation(0.04, fill_mode="constant", seed=0),
            keras.layers.RandomZoom(0.12, fill_mode="constant", seed=0),
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=0),
        ]
    )
    results = {}
    for name, layer in (
        ("keras_flip_rotation_zoom_translation", keras_layers),
        ("one_affine", random_affine_layer(0.04, 0.12, 0.06, 0)),
    ):
        function = tf.function(lambda x, layer=layer: layer(x, training=True))
        function(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function(batch)
            times.append((time.perf_counter() - started) * 1000)
        results[f"augmentation_{name}_ms_per_batch"] = round(statistics.median(times), 1)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset root (<class>/ folders)")
    parser.add_argument("--images", type=int, default=320, help="images per timed epoch (default 320 = 10 batches)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting after one warm-up epoch (default 3)")
    parser.add_argument("--cache-dir", default=".cache", help="decode-once cache (default .cache)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    from training.data import load_folder
    from training.pipeline import make_pipeline

    size, crop, batch_size = (256, 256), "head", 32
    dataset = load_folder(args.data, sizes=[size], cache_dir=Path(args.cache_dir) / "data", crop=crop)
    subset = np.random.default_rng(0).choice(len(dataset.paths), args.images, replace=False)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "images_per_epoch": args.images}
    for precision in ("float32", "bfloat16"):
        for source in ("jpeg_per_epoch", "cache"):
            if source == "cache":
                pipeline, seeds = make_pipeline(
                    dataset.images[size][subset], dataset.targets[subset], "rescale_unit", batch_size, True
                )
            else:
                pipeline = jpeg_pipeline(
                    Path(args.data), [dataset.paths[i] for i in subset], dataset.targets[subset], size, crop, batch_size, 0
                )
            seconds = statistics.median(time_epochs(precision, pipeline, dataset.labels, size, args.epochs, args.images))
            key = f"{precision}_{source}"
            results[f"{key}_images_per_s"] = round(args.images / seconds, 1)
            results[f"{key}_split_epoch_s"] = round(SPLIT_TRAIN_IMAGES * seconds / args.images, 1)
            rate, epoch = results[f"{key}_images_per_s"], results[f"{key}_split_epoch_s"]
            print(f"{key:<26} {rate:6.1f} images/s  {epoch:6.1f} s per split epoch")
    results.update(time_augmentation(size))
    base = results["float32_jpeg_per_epoch_images_per_s"]
    results["speedups_over_float32_jpeg"] = {
        key: round(results[f"{key}_images_per_s"] / base, 2)
        for key in ("float32_cache", "bfloat16_jpeg_per_epoch", "bfloat16_cache")
    }
    results["bfloat16_over_float32_with_cache"] = round(
        results["bfloat16_cache_images_per_s"] / results["float32_cache_images_per_s"], 2
    )
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
