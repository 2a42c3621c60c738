"""The ``tf.data`` pipeline over decoded images: shuffle, gather, augment, normalise, prefetch.

Images come from the decode-once cache (``training.data``) as one ``uint8`` array, so an epoch
reads no JPEG. Each epoch's order and augmentation are a function of ``(seed, epoch)`` only
(``EpochSeeds``), so a run resumed from a checkpoint replays exactly the epochs it missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

AUGMENTATION = {
    "rotation": 0.04,  # of a full turn: about +-14 degrees, as heads tilt in the scanner
    "zoom": 0.12,  # scale and crop: head size varies with field of view
    "translation": 0.06,
    "gamma": 0.3,  # log-uniform exponent in [1/1.3, 1.3]
    "gain": 0.2,  # intensity scale in [0.8, 1.2]
}
# How the source collections differ in acquisition (training.pipeline.random_acquisition_layer):
# each is applied to about half the images, so neither the clean nor the degraded look is a cue.
ACQUISITION = {
    "resolution": 0.35,  # smallest scale an image is brought down to before coming back up
    "blur": 1.5,  # largest Gaussian sigma in pixels
    "noise": 8.0,  # largest noise standard deviation on the 0..255 scale
    "jpeg_quality": 30,  # lowest JPEG quality a slice is re-encoded at
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


def _gaussian_blur(images, sigma):
    """Separable Gaussian blur of an NHWC float batch with one ``sigma`` (a scalar tensor), 7 taps."""
    import tensorflow as tf

    taps = tf.range(-3.0, 4.0)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    channels = tf.shape(images)[-1]
    rows = tf.tile(tf.reshape(kernel, [7, 1, 1, 1]), [1, 1, channels, 1])
    cols = tf.tile(tf.reshape(kernel, [1, 7, 1, 1]), [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(images, rows, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "SAME")


def random_acquisition_layer(resolution: float, blur: float, noise: float, jpeg_quality: int, seed: int):
    """Resolution, blur, noise and JPEG quality, each on about half the images of a 0..255 batch.

    The tumour classes come mostly from one collection of 512 px slices and the no-tumour class
    from others of varied size, scanner and compression, so sharpness, noise and JPEG blocking
    say which collection an image came from. Varying them in every class takes that cue away.
    Keras has none of these as a layer; the ops are TensorFlow's, as the pipeline is ``tf.data``.
    """
    import keras
    import tensorflow as tf

    def acquisition(inputs, generator):
        batch = tf.shape(inputs)[0]
        height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
        draws = keras.random.uniform((batch, 4), 0.0, 1.0, seed=generator)
        chosen = [tf.reshape(draws[:, index] < 0.5, [-1, 1, 1, 1]) for index in range(4)]
        scale = keras.random.uniform((), resolution, 1.0, seed=generator)
        small = tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32)
        coarse = tf.image.resize(tf.image.resize(inputs, small, antialias=True), [height, width])
        out = tf.where(chosen[0], coarse, inputs)
        sigma = keras.random.uniform((), 0.5, blur, seed=generator)
        out = tf.where(chosen[1], _gaussian_blur(out, sigma), out)
        spread = keras.random.uniform((batch, 1, 1, 1), 0.0, noise, seed=generator)
        noisy = out + spread * keras.random.normal(tf.shape(out), seed=generator)
        out = tf.clip_by_value(tf.where(chosen[2], noisy, out), 0.0, 255.0)
        qualities = tf.cast(keras.random.uniform((batch,), jpeg_quality, 96, seed=generator), tf.int32)

        def recompress(item):
            image, quality = item
            return tf.image.adjust_jpeg_quality(image / 255.0, quality) * 255.0

        compressed = tf.map_fn(recompress, (out, qualities), fn_output_signature=tf.float32)
        return tf.where(chosen[3], tf.reshape(compressed, tf.shape(out)), out)

    return _random_layer("random_acquisition", seed, acquisition)


def augmentation(seed: int = 0, rand_augment: bool = False, strength: dict[str, float] | None = None, acquisition: bool = False):
    """``keras.layers`` augmentation for 0..255 RGB batches, matched to how MRI slices vary.

    Flips, rotation, scale and crop, shift (one affine resampling), then gamma and gain, then
    (``acquisition``) resolution, blur, noise and JPEG quality; always float32, so a
    mixed-precision policy never rounds the pixels.
    """
    import keras

    s = {**AUGMENTATION, **ACQUISITION, **(strength or {})}
    layers = [
        random_affine_layer(s["rotation"], s["zoom"], s["translation"], seed),
        random_intensity_layer(s["gamma"], s["gain"], seed + 1),
    ]
    if acquisition:
        layers.append(random_acquisition_layer(s["resolution"], s["blur"], s["noise"], int(s["jpeg_quality"]), seed + 2))
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


def leaf_layers(model) -> list:
    """A model's layers with any nested model replaced by its own layers, in order, each once."""
    import keras

    found, seen = [], set()
    for layer in model.layers:
        for leaf in leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]:
            if id(leaf) not in seen:
                seen.add(id(leaf))
                found.append(leaf)
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
            layers = [*(augmenter.layers if augmenter is not None else []), *leaf_layers(self.model)]
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


@dataclass
class Swaps:
    """Counterfactual variants an epoch may swap in for a pipeline's images (``training.counterfactuals``).

    ``erased[i]`` and ``control[i]`` index ``pixels`` for the pipeline's image ``i``. Each epoch
    an image with an erased variant is replaced by one with probability ``erase`` (labelled
    ``no_tumour``, or with ``not_class`` "any class but its own": ``training.partial.not_class_target``),
    and any image by a control variant with probability ``control_rate`` (label kept; the two
    draws exclude each other).
    """

    pixels: np.ndarray
    erased: list[np.ndarray]
    control: list[np.ndarray]
    no_tumour: int
    erase: float = 0.2
    control_rate: float = 0.2
    not_class: int = 0  # with --erased-label not-class: the number of classes (0: erased means no tumour)

    def erased_target(self, label: int) -> int:
        """The target of an erased tumour that was class ``label``."""
        from .partial import not_class_target

        return not_class_target(label, self.not_class) if self.not_class else self.no_tumour

    def extended(self, count: int) -> Swaps:
        """The same swaps over ``count`` more images that have no variant (partial labels: no outline)."""
        nothing = [np.zeros(0, dtype=np.int64)] * count
        return replace(self, erased=[*self.erased, *nothing], control=[*self.control, *nothing])

    def expected_targets(self, targets: np.ndarray, num_classes: int) -> np.ndarray:
        """How many images of each class an epoch holds on average, after the swaps."""
        counts = np.bincount(targets, minlength=num_classes).astype(float)
        for target, erased in zip(targets, self.erased):
            if len(erased):
                counts[target] -= self.erase
                if not self.not_class:  # a "not this class" target adds to no class
                    counts[self.no_tumour] += self.erase
        return counts

    def apply(self, batch: np.ndarray, labels: np.ndarray, indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
        """Swap variants into ``batch`` and ``labels`` in place; the draw depends on (seed, epoch, image) only.

        Returns which rows now show an erased tumour (their mask no longer marks anything).
        """
        erased_rows = np.zeros(len(indices), dtype=bool)
        for row, index in enumerate(indices):
            drawn = self.choose(int(index), seed, epoch)
            if drawn is None:
                continue
            erased, variant = drawn
            batch[row] = self.pixels[variant]
            if erased:
                labels[row] = self.erased_target(labels[row])
                erased_rows[row] = True
        return erased_rows

    def choose(self, index: int, seed: int, epoch: int) -> tuple[bool, int] | None:
        """``(erased, row of pixels)`` swapped in for image ``index`` this epoch, or ``None`` (a function of its arguments)."""
        draw = np.random.default_rng([seed, epoch, index])
        chance = draw.random()
        erased, control = self.erased[index], self.control[index]
        if len(erased) and chance < self.erase:
            return True, int(draw.choice(erased))
        if len(control) and (chance - (self.erase if len(erased) else 0.0)) < self.control_rate:
            return False, int(draw.choice(control))
        return None


def make_pipeline(
    images: np.ndarray,
    targets: np.ndarray,
    preprocessing: str,
    batch_size: int = 32,
    training: bool = False,
    seed: int = 0,
    rand_augment: bool = False,
    acquisition: bool = False,
    swaps: Swaps | None = None,
    masks: np.ndarray | None = None,
    sequence=None,
):
    """``(dataset, callback)``: a ``tf.data`` pipeline over ``uint8`` images and what keeps it reproducible.

    For training, each epoch is a stateless shuffle of ``(seed, epoch)`` and the augmentation
    state is reset from the same pair; pass the callback to ``fit``. Images are gathered by
    index from the in-memory array (never embedded in the graph), one batch at a time, and
    ``swaps`` (training only) replaces some with their counterfactual variants. With ``masks``
    (tumour masks aligned with ``images``; training only) the pipeline yields ``((images, masks),
    labels)``, the masks moved by the same flips, turns and shifts as their images
    (``training.guidance``); an erased tumour's mask is empty. ``sequence``
    (``training.sequence.SequenceRemap``; training only) remaps some images' intensities after the swaps.
    """
    import tensorflow as tf

    from tumor_ai.core.preprocessing import NORMALIZERS

    normalizer = NORMALIZERS[preprocessing]
    count = len(targets)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    dataset = epoch_order(count, seed, epoch) if training else tf.data.Dataset.range(count)
    dataset = dataset.batch(batch_size)
    targets = np.asarray(targets, dtype=np.int32)
    augmenter = augmentation(seed, rand_augment, acquisition=acquisition) if training else None
    height, width, channels = images.shape[1:]
    swaps = swaps if training else None

    masks = masks if training else None
    sequence = sequence if training else None

    def pick(indices: np.ndarray, epoch_now: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch, labels = images[indices], targets[indices]
        erased = swaps.apply(batch, labels, indices, seed, int(epoch_now)) if swaps is not None else np.zeros(len(indices), bool)
        if sequence is not None:
            sequence.apply(batch, labels, indices, int(epoch_now))
        shown = masks[indices] & ~erased[:, None, None] if masks is not None else np.zeros((len(indices), 1, 1), bool)
        return batch, labels, shown.astype(np.uint8)[..., None]

    def gather(indices):
        batch, labels, shown = tf.numpy_function(pick, [indices, epoch], [tf.uint8, tf.int32, tf.uint8], stateful=False)
        return tf.ensure_shape(batch, [None, height, width, channels]), tf.ensure_shape(labels, [None]), shown

    def transform(batch, labels, shown):
        batch = tf.cast(batch, tf.float32)
        if masks is not None:  # the affine layer moves image and mask together, as one 4-channel batch
            moved = augmenter.layers[0](tf.concat([batch, tf.cast(shown, tf.float32)], axis=-1), training=True)
            batch, shown = moved[..., :channels], moved[..., channels:]
            for layer in augmenter.layers[1:]:
                batch = layer(batch, training=True)
            return (normalizer(tf.clip_by_value(batch, 0.0, 255.0)), tf.cast(shown > 0.5, tf.float32)), labels
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
