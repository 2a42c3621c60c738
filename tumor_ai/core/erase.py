"""Hide a region of a slice by filling it smoothly from its surroundings.

The tumour-erased test (``training.localise``) and the app's "hide a region and ask again" use
this one fill, so what a person tries in the browser is what the published figures measured.
Black or a flat grey would be a new, sharp object the model may read; a fill from the
surroundings removes what was there without adding an edge. The fill must not add structure
either: a fill in rings or steps could look like a ring-enhancing lesion to a model. So it is a
push-pull fill (Gortler et al., "The Lumigraph", 1996): the image and its mask of visible pixels
are halved until no hole is left, then rebuilt from the coarsest level, each hidden pixel taking
the smoothly upsampled value of the level below, blended by how much of it was visible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SMALLEST = 2  # pixels on the shorter side of the coarsest level


def fill_region(pixels: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``pixels`` (H, W[, C], uint8) with ``region`` (H, W, bool) filled from the pixels around it.

    Work happens in the region's bounding box plus a margin as large as the region, so hiding a
    small area of a large upload costs little. An empty region returns the pixels unchanged.
    """
    region = np.asarray(region, dtype=bool)
    if region.shape != pixels.shape[:2]:
        raise ValueError(f"region {region.shape} does not match the image {pixels.shape[:2]}")
    if not region.any():
        return pixels
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    margin = max(16, rows[-1] - rows[0], cols[-1] - cols[0])
    top, bottom = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, region.shape[0])
    left, right = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, region.shape[1])
    box = (slice(top, bottom), slice(left, right))
    values = pixels[box].astype(np.float32).reshape(bottom - top, right - left, -1)
    filled = push_pull(values, ~region[box])
    out = pixels.copy()
    out[box] = (
        np.where(region[box][..., None], np.clip(np.rint(filled), 0, 255), values).astype(pixels.dtype).reshape(pixels[box].shape)
    )
    return out


def push_pull(values: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Every pixel of ``values`` (H, W, C) estimated from the ``visible`` ones: visible pixels keep their value."""
    weight = visible.astype(np.float32)
    levels = [(values * weight[..., None], weight)]
    while min(levels[-1][1].shape) > SMALLEST and levels[-1][1].min() <= 0:
        levels.append(tuple(_halve(array) for array in levels[-1]))
    premultiplied, weight = levels[-1]
    estimate = np.where(weight[..., None] > 0, premultiplied / np.maximum(weight, 1e-6)[..., None], 0.0)
    if (weight <= 0).any():  # still a hole at the coarsest level: the mean of what is visible
        mean = premultiplied.sum(axis=(0, 1)) / max(float(weight.sum()), 1e-6)
        estimate[weight <= 0] = mean
    for premultiplied, weight in reversed(levels[:-1]):
        height, width = weight.shape  # the coarse level covers the padded (even) size: resize to it, then crop
        upsampled = _resize(estimate, (2 * estimate.shape[0], 2 * estimate.shape[1]))[:height, :width]
        own = premultiplied / np.maximum(weight, 1e-6)[..., None]
        share = np.clip(weight, 0.0, 1.0)[..., None]
        estimate = share * own + (1.0 - share) * upsampled
    return estimate


def _halve(array: np.ndarray) -> np.ndarray:
    """Half the size by 2x2 means; an odd edge is padded with zero weight (nothing visible), so it adds no bias."""
    height, width = array.shape[:2]
    padded = np.pad(array, [(0, height % 2), (0, width % 2)] + [(0, 0)] * (array.ndim - 2))
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, *array.shape[2:]).mean(axis=(1, 3))


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (h, w, C) floats to ``shape`` = (H, W), channel by channel."""
    size = (shape[1], shape[0])
    channels = [
        np.asarray(Image.fromarray(array[..., c], mode="F").resize(size, Image.Resampling.BILINEAR))
        for c in range(array.shape[-1])
    ]
    return np.stack(channels, axis=-1)
