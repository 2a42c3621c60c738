"""The ``tf.data`` pipeline over decoded images: shuffle, gather, augment, normalise, prefetch.

Images come from the decode-once cache (``training.data``) as one ``uint8`` array, so an epoch
reads no JPEG. Each epoch's order and augmentation are a function of ``(seed, epoch)`` only
(``EpochSeeds``), so a run resumed from a checkpoint replays exactly the epochs it missed.
"""

from __future__ import annotations

import math

import numpy as np

AUGMENTATION = {
    "rotation": 0.04,  # of a full turn: about +-14 degrees, as heads tilt in the scanner
    "zoom": 0.12,  # scale and crop: head size varies with field of view
    "translation": 0.06,
    "gamma": 0.3,  # log-uniform exponent in [1/1.3, 1.3]
    "gain": 0.2,  # intensity scale in [0.8, 1.2]
}


def _random_layer(name: str, seed: int, transform):
    """A float32 ``keras.layers.Layer`` that applies ``transform(inputs, seed_generator)`` in training only."""
    import keras

    class RandomLayer(keras.layers.Layer):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, inputs, training: bool = True):
            return transform(inputs, self.generator) if training else inputs

    return RandomLayer(name=name, dtype="float32")


def random_intensity_layer(gamma: float, gain: float, seed: int):
    """Gamma and gain per image, for 0..255 batches: how T1, T2 and FLAIR windowing differ.

    Keras's ``RandomBrightness`` and ``RandomContrast`` shift the black background to grey,
    which no MRI slice shows; a power law and a gain keep black black. Keras has no gamma layer.
    """
    import keras
    from keras import ops

    def intensity(inputs, generator):
        shape = (ops.shape(inputs)[0], 1, 1, 1)
        exponent = ops.exp(keras.random.uniform(shape, -math.log1p(gamma), math.log1p(gamma), seed=generator))
        factor = keras.random.uniform(shape, 1.0 - gain, 1.0 + gain, seed=generator)
        return ops.clip(factor * 255.0 * ops.power(ops.clip(inputs / 255.0, 0.0, 1.0), exponent), 0.0, 255.0)

    return _random_layer("random_intensity", seed, intensity)


def random_affine_layer(rotation: float, zoom: float, translation: float, seed: int):
    """Flip, rotation, zoom and shift as one resampling (``keras.ops.image.affine_transform``).

    Keras's ``RandomFlip``, ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` each
    resample the whole batch; on 2 cores those four passes cost about as much as a third of a
    training step (``benchmarks/training_throughput.py``). One combined matrix does the same
    geometry in one pass.
    """
    import keras
    from keras import ops

    def affine(inputs, generator):
        batch = ops.shape(inputs)[0]
        height, width = ops.cast(ops.shape(inputs)[1], "float32"), ops.cast(ops.shape(inputs)[2], "float32")
        draws = keras.random.uniform((batch, 5), 0.0, 1.0, seed=generator)
        flip = ops.where(draws[:, 0] < 0.5, -1.0, 1.0)
        angle = (2.0 * draws[:, 1] - 1.0) * rotation * 2.0 * math.pi
        scale = 1.0 + (2.0 * draws[:, 2] - 1.0) * zoom  # > 1 zooms in
        shift_x = (2.0 * draws[:, 3] - 1.0) * translation * width
        shift_y = (2.0 * draws[:, 4] - 1.0) * translation * height
        centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        # Output pixel p reads input pixel c + F R (p - c - t) / s.
        a0, a1 = flip * ops.cos(angle) / scale, flip * ops.sin(angle) / scale
        b0, b1 = -ops.sin(angle) / scale, ops.cos(angle) / scale
        a2 = centre_x - a0 * (centre_x + shift_x) - a1 * (centre_y + shift_y)
        b2 = centre_y - b0 * (centre_x + shift_x) - b1 * (centre_y + shift_y)
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(inputs, transform, interpolation="bilinear", fill_mode="constant")

    return _random_layer("random_affine", seed, affine)


def augmentation(seed: int = 0, rand_augment: bool = False, strength: dict[str, float] | None = None):
    """``keras.layers`` augmentation for 0..255 RGB batches, matched to how MRI slices vary.

    Flips, rotation, scale and crop, shift (one affine resampling), then gamma and gain; always
    float32, so a mixed-precision policy never rounds the pixels.
    """
    import keras

    s = {**AUGMENTATION, **(strength or {})}
    layers = [
        random_affine_layer(s["rotation"], s["zoom"], s["translation"], seed),
        random_intensity_layer(s["gamma"], s["gain"], seed + 1),
    ]
    if rand_augment:
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.3, seed=seed, dtype="float32"))
    return keras.Sequential(layers, name="augmentation")


def seed_generators(layers) -> list:
    """The random-state holders (``keras.random.SeedGenerator``) of some layers, in a fixed order."""
    import keras

    found = []
    for layer in layers:
        found += [value for _, value in sorted(vars(layer).items()) if isinstance(value, keras.random.SeedGenerator)]
    return found


def epoch_seeds_callback(epoch_variable, augmenter, seed: int):
    """A callback that sets every random state from ``(seed, epoch)`` as each epoch begins.

    The shuffle, the augmentation and the model's own dropout then depend on the epoch alone,
    so an epoch replayed after ``--resume`` is the epoch an uninterrupted run would have trained.
    """
    import keras

    class EpochSeeds(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            epoch_variable.assign(epoch)
            layers = [*(augmenter.layers if augmenter is not None else []), *self.model.layers]
            for index, generator in enumerate(seed_generators(layers)):
                generator.state.assign(np.array([seed * 1000 + index, epoch * 1_000_000], dtype="int64"))

    return EpochSeeds()


def epoch_order(count: int, seed: int, epoch):
    """A dataset of the indices ``0..count-1`` in a stateless shuffle of ``(seed, epoch)``; ``epoch`` is a variable."""
    import tensorflow as tf

    order = tf.data.Dataset.from_tensors(tf.range(count, dtype=tf.int64)).map(
        lambda indices: tf.random.experimental.stateless_shuffle(indices, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    )
    return order.unbatch()


def make_pipeline(
    images: np.ndarray,
    targets: np.ndarray,
    preprocessing: str,
    batch_size: int = 32,
    training: bool = False,
    seed: int = 0,
    rand_augment: bool = False,
):
    """``(dataset, callback)``: a ``tf.data`` pipeline over ``uint8`` images and what keeps it reproducible.

    For training, each epoch is a stateless shuffle of ``(seed, epoch)`` and the augmentation
    state is reset from the same pair; pass the callback to ``fit``. Images are gathered by
    index from the in-memory array (never embedded in the graph), one batch at a time.
    """
    import tensorflow as tf

    from tumor_ai.preprocessing import NORMALIZERS

    normalizer = NORMALIZERS[preprocessing]
    count = len(targets)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    dataset = epoch_order(count, seed, epoch) if training else tf.data.Dataset.range(count)
    dataset = dataset.batch(batch_size)
    targets_tensor = tf.constant(np.asarray(targets, dtype=np.int32))
    augmenter = augmentation(seed, rand_augment) if training else None
    height, width, channels = images.shape[1:]

    def gather(indices):
        batch = tf.numpy_function(lambda idx: images[idx], [indices], tf.uint8, stateful=False)
        batch = tf.ensure_shape(batch, [None, height, width, channels])
        return batch, tf.gather(targets_tensor, indices)

    def transform(batch, labels):
        batch = tf.cast(batch, tf.float32)
        if augmenter is not None:
            batch = tf.clip_by_value(augmenter(batch, training=True), 0.0, 255.0)
        return normalizer(batch), labels

    # One augmentation call at a time keeps the random draws in a fixed order.
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(transform, num_parallel_calls=1 if training else tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
    callback = epoch_seeds_callback(epoch, augmenter, seed)
    return dataset, callback
