"""Turn an RGB image into exactly what a model was trained on.

The resize and the normalisation a model needs are named in its metadata
(``input_size`` and ``preprocessing``); training and serving both call these functions,
so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image


def rescale_unit(batch):
    """0..255 float RGB to 0..1, for models trained from scratch (numpy array or tensor)."""
    return batch / 255.0


def vgg16_caffe(batch):
    """VGG16's own ``preprocess_input`` (caffe: RGB to BGR, ImageNet means subtracted), numpy or tensor."""
    from keras.applications.vgg16 import preprocess_input

    return preprocess_input(batch)


NORMALIZERS: dict[str, Callable] = {
    "rescale_unit": rescale_unit,
    "vgg16": vgg16_caffe,
}


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB ``uint8`` (H, W, 3) to ``size`` = (height, width), antialiased bilinear."""
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))


def normalize(batch: np.ndarray, name: str) -> np.ndarray:
    """Apply the normalisation a model's metadata names to a batch of 0..255 RGB (float32 out)."""
    try:
        return NORMALIZERS[name](np.asarray(batch, dtype=np.float32))
    except KeyError:
        raise ValueError(f"unknown preprocessing '{name}'; known: {sorted(NORMALIZERS)}") from None
