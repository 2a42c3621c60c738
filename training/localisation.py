"""The measures behind ``tumor-ai localise``: does a map point at the tumour, and does the model need it?

Each is a few lines of NumPy over one image's map and mask, so they are written here rather than
taken from ``quantus``: its pointing game has no distance tolerance (Zhang et al. allow 15 px), and
its deletion and insertion wrap the model in a framework of its own, outside the crop, flip and
temperature that ``tumor_ai.core.preprocessing`` and ``tumor_ai.core.inference`` apply when the app serves.

- ``pointing_hit`` (Zhang et al., 2016): the map's peak lies on the tumour, within a tolerance.
- ``relevance_mass`` (Arras et al., 2022): the share of the map's mass inside the tumour; a map
  spread evenly scores the tumour's share of the image (``mask.mean()``).
- ``deletion_insertion`` (Petsiuk et al., 2018): the class probability as the most-highlighted
  pixels are removed first (deletion: a faithful map makes it fall fast, low area under the curve)
  or revealed first on a blurred copy (insertion: it rises fast, high area).
- ``group_bootstrap``: 95% intervals that resample whole figshare slices, so the copies of one slice
  in the validation split count once per draw, not as independent evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tumor_ai.core.cam import upsample
from tumor_ai.core.preprocessing import foreground

TOLERANCE_AT_512 = 15  # pixels at 512 px, as Zhang et al.'s pointing game
DELETION_STEPS = 16


def pointing_hit(cam: np.ndarray, mask: np.ndarray, tolerance_at_512: float = TOLERANCE_AT_512) -> bool:
    """The map's peak lies within the tolerance of a tumour pixel (scaled from 512 px to the image's longer side).

    ``cam`` is already at the mask's size. A flat map points nowhere: a miss.
    """
    if float(cam.max()) <= 0.0 or not mask.any():
        return False
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    distance = ndimage.distance_transform_edt(~mask)
    return bool(distance[peak] <= tolerance_at_512 * max(mask.shape) / 512)


def relevance_mass(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's (non-negative) mass inside the mask; 0 for a flat map."""
    total = float(cam.sum())
    return float(cam[mask].sum()) / total if total > 0 else 0.0


def border_mass(cam: np.ndarray, band: float = 0.1) -> float:
    """Share of the map's mass in the outer ``band`` of the model's input (where zero padding meets the image)."""
    height, width = cam.shape
    rows, cols = max(1, round(band * height)), max(1, round(band * width))
    inner = cam[rows : height - rows, cols : width - cols].sum()
    total = float(cam.sum())
    return float(1.0 - inner / total) if total > 0 else 0.0


def pixel_order(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel indices of the model input, most highlighted first (ties broken by position)."""
    return np.argsort(-upsample(cam, shape).ravel(), kind="stable")


def deletion_insertion_inputs(pixels: np.ndarray, cam: np.ndarray, steps: int = DELETION_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """The deletion and insertion sequences for one model input (uint8, H x W x 3): ``steps + 1`` images each.

    Deletion replaces pixels with black (the MRI background), most highlighted first; insertion
    starts from a strongly blurred copy (Petsiuk et al.) and puts the original pixels back in the
    same order. Step 0 is the untouched image (deletion) or the blurred one (insertion).
    """
    height, width = pixels.shape[:2]
    order = pixel_order(cam, (height, width))
    blurred = ndimage.gaussian_filter(pixels.astype(np.float32), sigma=(height / 20, width / 20, 0)).astype(np.uint8)
    deleted, inserted = [], []
    for step in range(steps + 1):
        chosen = np.zeros(height * width, bool)
        chosen[order[: round(step / steps * height * width)]] = True
        chosen = chosen.reshape(height, width)[..., None]
        deleted.append(np.where(chosen, 0, pixels))
        inserted.append(np.where(chosen, pixels, blurred))
    return np.stack(deleted), np.stack(inserted)


def area_under(curve: np.ndarray) -> float:
    """Area under a probability curve sampled evenly over fraction 0..1 (trapezoid rule)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(((curve[1:] + curve[:-1]) / 2).mean())


@dataclass
class Interval:
    """A mean with its 95% bootstrap interval."""

    value: float
    low: float
    high: float
    images: int

    def as_dict(self, digits: int = 3) -> dict:
        return {
            "value": round(self.value, digits),
            "low": round(self.low, digits),
            "high": round(self.high, digits),
            "images": self.images,
        }


def group_bootstrap(values: np.ndarray, groups: np.ndarray, draws: int = 1000, seed: int = 0) -> Interval:
    """Mean of ``values`` and a percentile 95% interval that resamples whole groups (copies of one slice)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    _, index = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(index, weights=values), np.bincount(index)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(draws, len(sums)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(values.mean()), float(low), float(high), int(values.size))


def control_region(mask: np.ndarray, head: np.ndarray, rng: np.random.Generator, tries: int = 200) -> np.ndarray | None:
    """The tumour's own shape moved elsewhere in the head, clear of the tumour (dilated), for the same-size control.

    ``head`` is the image's foreground. Tries random shifts; ``None`` when none fits (a tumour
    that fills most of the head).
    """
    keep_clear = ndimage.binary_dilation(mask, iterations=max(3, round(0.02 * max(mask.shape))))
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    for _ in range(tries):
        d_row = int(rng.integers(-rows.min(), height - rows.max()))
        d_col = int(rng.integers(-cols.min(), width - cols.max()))
        moved = np.zeros_like(mask)
        moved[rows + d_row, cols + d_col] = True
        if not (moved & keep_clear).any() and head[moved].mean() > 0.95:
            return moved
    return None


def head_mask(pixels: np.ndarray) -> np.ndarray:
    """The image's foreground (the head), as the head crop finds it (``preprocessing.foreground``), holes filled."""
    gray = pixels.mean(axis=-1) if pixels.ndim == 3 else pixels.astype(np.float32)
    return ndimage.binary_fill_holes(foreground(gray))
