"""Is this picture a brain MRI slice at all? A guard in front of the tumour label.

A classifier always answers with one of its classes, even for a cat. Two cheap, calibrated
tests stand before the label:

* image statistics: MRI slices are grey (colour saturation near zero), have structure (not blank),
  and a dark background around the head that reaches the image border;
* feature distance: the Mahalanobis distance of the model's own pooled features to those of the
  training images (shrunk covariance), with a threshold set high in the training images' tail
  (99.9% by default; ``training.fit_mri_check`` picks 99.95%).

``training.fit_mri_check`` fits both on the training split and checks that at least 99.5% of the
validation MRIs pass; the fitted values live beside the model (``mri_check.npz`` and the
``mri_check`` block of ``tumor_ai.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHECK_FILE = "mri_check.npz"
STATISTICS_SIZE = (64, 64)  # image statistics are taken on a copy this size
MESSAGE = "This does not look like a brain MRI slice, so no tumour class is given."


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """(saturation, contrast, dark fraction, border brightness) of an RGB ``uint8`` image, on a 64x64 copy."""
    from tumor_ai.preprocessing import resize

    small = resize(pixels, STATISTICS_SIZE).astype(np.float32) / 255.0
    saturation = float((small.max(axis=-1) - small.min(axis=-1)).mean())
    gray = small.mean(axis=-1)
    frame = np.ones(gray.shape, dtype=bool)
    frame[8:-8, 8:-8] = False
    return np.array([saturation, float(gray.std()), float((gray < 0.08).mean()), float(gray[frame].mean())], dtype=np.float32)


@dataclass
class MriCheck:
    """Fitted bounds on the image statistics and the feature distance of training MRIs."""

    mean: np.ndarray
    precision: np.ndarray
    distance_threshold: float
    max_saturation: float
    min_contrast: float
    min_dark_fraction: float
    max_border_brightness: float

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        statistics: np.ndarray,
        quantile: float = 0.995,
        distance_quantile: float = 0.999,
        shrinkage: float = 0.1,
    ) -> MriCheck:
        """Fit on training images: bounds at ``quantile`` of their statistics, ``distance_quantile`` of their distances.

        Held-out MRIs lie a little farther from the training features than the training images
        themselves, so the distance bound sits higher in the tail than the statistics' bounds.
        """
        mean = embeddings.mean(axis=0)
        centred = embeddings - mean
        covariance = centred.T @ centred / max(len(embeddings) - 1, 1)
        covariance = (1 - shrinkage) * covariance + shrinkage * np.eye(len(mean)) * np.trace(covariance) / len(mean)
        precision = np.linalg.inv(covariance)
        check = cls(mean.astype(np.float32), precision.astype(np.float32), 0.0, 0.0, 0.0, 0.0, 0.0)
        distances = check.distances(embeddings)
        check.distance_threshold = float(np.quantile(distances, distance_quantile))
        check.max_saturation = float(np.quantile(statistics[:, 0], quantile)) + 0.02
        check.min_contrast = float(np.quantile(statistics[:, 1], 1 - quantile)) * 0.8
        check.min_dark_fraction = float(np.quantile(statistics[:, 2], 1 - quantile)) * 0.8
        check.max_border_brightness = float(np.quantile(statistics[:, 3], quantile)) + 0.02
        return check

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        centred = np.asarray(embeddings, np.float32) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.precision, centred), 0.0))

    def passes(self, statistics: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """Boolean per image: every test within its training bound."""
        return (
            (statistics[:, 0] <= self.max_saturation)
            & (statistics[:, 1] >= self.min_contrast)
            & (statistics[:, 2] >= self.min_dark_fraction)
            & (statistics[:, 3] <= self.max_border_brightness)
            & (distances <= self.distance_threshold)
        )

    def score(self, images: list[np.ndarray], embeddings: np.ndarray) -> list[tuple[bool, float]]:
        """``(is_mri, distance / threshold)`` per image; a score above 1 is out of distribution."""
        statistics = np.stack([image_statistics(image) for image in images])
        distances = self.distances(embeddings)
        verdicts = self.passes(statistics, distances)
        return [(bool(ok), round(float(d / self.distance_threshold), 3)) for ok, d in zip(verdicts, distances)]

    def bounds(self) -> dict[str, float]:
        return {
            "distance_threshold": round(self.distance_threshold, 4),
            "max_saturation": round(self.max_saturation, 4),
            "min_contrast": round(self.min_contrast, 4),
            "min_dark_fraction": round(self.min_dark_fraction, 4),
            "max_border_brightness": round(self.max_border_brightness, 4),
        }

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CHECK_FILE
        np.savez(path, mean=self.mean, precision=self.precision, **{k: np.array(v) for k, v in self.bounds().items()})
        return path

    @classmethod
    def load(cls, path: str | Path) -> MriCheck:
        with np.load(path) as stored:
            return cls(
                stored["mean"],
                stored["precision"],
                float(stored["distance_threshold"]),
                float(stored["max_saturation"]),
                float(stored["min_contrast"]),
                float(stored["min_dark_fraction"]),
                float(stored["max_border_brightness"]),
            )

    @classmethod
    def in_folder(cls, folder: str | Path) -> MriCheck | None:
        """The check fitted for the model in ``folder``, if it has one."""
        path = Path(folder) / CHECK_FILE
        return cls.load(path) if path.exists() else None
