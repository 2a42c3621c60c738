"""Hide a region of a slice by filling it smoothly from its surroundings.

The tumour-erased test (``training.localise``) and the app's "hide a region and ask again" use
this one fill, so what a person tries in the browser is what the published figures measured.
Black or a flat grey would be a new, sharp object the model may read; a fill from the
surroundings removes what was there without adding an edge. It is normalised convolution at
growing scales: each hidden pixel takes the Gaussian-weighted mean of the visible pixels at the
smallest scale that reaches it, and the result is smoothed once inside the region.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SCALES = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)  # Gaussian sigmas in pixels, smallest first
REACH = 0.2  # a scale fills a pixel once this share of its weight falls on visible pixels


def fill_region(pixels: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``pixels`` (H, W[, C], uint8) with ``region`` (H, W, bool) filled from the pixels around it.

    Work happens in the region's bounding box plus a margin, so hiding a small area of a large
    upload costs little. An empty region returns the pixels unchanged.
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
    out = pixels.copy()
    box = (slice(top, bottom), slice(left, right))
    out[box] = _fill_box(pixels[box], region[box])
    return out


def _fill_box(pixels: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    values = pixels.astype(np.float32).reshape(*hidden.shape, -1)
    visible = (~hidden).astype(np.float32)
    filled = values * visible[..., None]
    done = ~hidden
    for sigma in SCALES:
        weight = ndimage.gaussian_filter(visible, sigma, mode="nearest")
        reached = ~done & (weight > REACH * weight.max())
        if reached.any():
            for channel in range(values.shape[-1]):
                mean = ndimage.gaussian_filter(values[..., channel] * visible, sigma, mode="nearest") / np.maximum(weight, 1e-6)
                filled[..., channel][reached] = mean[reached]
            done |= reached
        if done.all():
            break
    if not done.all():  # a region with no visible pixel near it: the mean of what is visible
        filled[~done] = values[~hidden].mean(axis=0) if (~hidden).any() else 0.0
    smooth = np.stack([ndimage.gaussian_filter(filled[..., c], 2.0, mode="nearest") for c in range(values.shape[-1])], -1)
    result = np.where(hidden[..., None], smooth, values)
    return np.clip(np.rint(result), 0, 255).astype(pixels.dtype).reshape(pixels.shape)
