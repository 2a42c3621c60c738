"""Take the sequence cue away: remap a slice's intensities as another sequence or collection would show them.

The no-tumour class came from other collections than most tumour slices, with another mix of MRI
sequences (T1, T2, FLAIR) and windowing, so how a slice's intensities are *distributed* (histogram
shape, bright CSF against dark white matter, the share of bright pixels) says which collection,
and so which class, it came from (``python -m training.cues`` measures it). Each remap keeps the
anatomy and the lesion where they are and changes only that distribution:

- ``match``: histogram matching of the head to a random training slice of *another* class, so a
  tumour slice can carry a no-tumour slice's histogram and the reverse;
- ``invert``: the head's contrast inverted (a T1-like slice becomes T2-like and back), black
  background kept;
- ``curve``: a random monotone or non-monotone tone curve through five knots (how windowing and
  sequences reorder tissue brightness);
- ``bias``: a smooth multiplicative bias field, as TorchIO's ``RandomBiasField`` and MONAI's
  ``RandBiasField`` draw it (a low-order polynomial, exponentiated).

Keras has none of these as a layer, and histogram matching needs another image of the batch's
source pool, so they run in NumPy where the pipeline gathers a batch (``training.pipeline``), with
every draw a function of ``(seed, epoch, image)`` so a resumed epoch is the same epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

REMAPS = ("match", "invert", "curve", "bias")
BIAS_ORDER = 3
BIAS_STRENGTH = 0.5  # the polynomial's coefficients are drawn in [-0.5, 0.5], as TorchIO's default


def head_region(gray: np.ndarray) -> np.ndarray:
    """The head: pixels above a tenth of the brightest, holes filled (the black background is left alone)."""
    peak = float(gray.max())
    if peak <= 0:
        return np.zeros(gray.shape, dtype=bool)
    return ndimage.binary_fill_holes(gray > 0.1 * peak)


def match_histogram(gray: np.ndarray, head: np.ndarray, reference: np.ndarray, reference_head: np.ndarray) -> np.ndarray:
    """``gray`` with its head's intensity quantiles replaced by those of ``reference``'s head."""
    out = gray.copy()
    source = gray[head]
    target = reference[reference_head]
    if not source.size or not target.size:
        return out
    ranks = source.argsort(kind="stable").argsort(kind="stable") / max(source.size - 1, 1)
    out[head] = np.quantile(target, ranks)
    return out


def tone_curve(gray: np.ndarray, head: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random piecewise-linear curve through five knots over 0..255, applied inside the head."""
    knots = np.linspace(0.0, 255.0, 5)
    values = rng.uniform(0.0, 255.0, 5)
    if rng.random() < 0.5:
        values.sort()  # half the curves keep the order of tissues, half may reorder them
    out = gray.copy()
    out[head] = np.interp(gray[head], knots, values)
    return out


def bias_field(
    shape: tuple[int, int], rng: np.random.Generator, order: int = BIAS_ORDER, strength: float = BIAS_STRENGTH
) -> np.ndarray:
    """``exp`` of a random polynomial in x and y of total degree ``order``, on a ``shape`` grid."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    field = np.zeros(shape)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            field += rng.uniform(-strength, strength) * x**i * y**j
    return np.exp(field)


@dataclass
class SequenceRemap:
    """Remap ``rate`` of a batch's images (one remap each, drawn from ``REMAPS``), in place.

    ``pool`` and ``pool_targets`` are the images histogram matching draws its reference from (the
    pipeline's own training images): a slice is matched to one of another target.
    """

    pool: np.ndarray
    pool_targets: np.ndarray
    rate: float
    seed: int = 0

    def apply(self, batch: np.ndarray, labels: np.ndarray, indices: np.ndarray, epoch: int) -> None:
        for row, index in enumerate(indices):
            rng = np.random.default_rng([self.seed, epoch, int(index), 7])
            if rng.random() >= self.rate:
                continue
            batch[row] = self.remap(batch[row], int(labels[row]), str(rng.choice(REMAPS)), rng)

    def remap(self, image: np.ndarray, label: int, kind: str, rng: np.random.Generator) -> np.ndarray:
        """One image (H, W, C uint8) remapped by ``kind``; the result is grey (every channel equal)."""
        gray = image.astype(np.float32).mean(axis=-1)
        head = head_region(gray)
        if kind == "match":
            others = np.flatnonzero(self.pool_targets != label)
            if not len(others):
                return image
            reference = self.pool[int(rng.choice(others))].astype(np.float32).mean(axis=-1)
            gray = match_histogram(gray, head, reference, head_region(reference))
        elif kind == "invert":
            gray = np.where(head, gray[head].max(initial=0.0) + gray[head].min(initial=0.0) - gray, gray)
        elif kind == "curve":
            gray = tone_curve(gray, head, rng)
        else:
            gray = gray * bias_field(gray.shape, rng)
        out = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(out[..., None], image.shape[-1], axis=-1)
