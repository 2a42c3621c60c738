"""Is this picture a brain MRI slice at all? A guard in front of the tumour label.

A classifier always answers with one of its classes, even for a cat. Two cheap, calibrated
tests stand before the label:

* image statistics: MRI slices are grey (colour saturation near zero), have structure (not blank),
  and a dark background around the head that reaches the image border. Two more catch CT slices
  and phantoms, which are grey too: a CT window clips the skull to pure white (the saturated
  share of the head), and CT brain and drawn phantoms are smooth where MRI has texture (the flat
  share of the head);
* a learned refusal of other medical pictures (outlier exposure, Hendrycks et al., 2019): a
  one-hidden-layer network on the model's pooled features and the image statistics, fitted on the
  training MRIs against CT at many windows, radiographs, ultrasound and other pictures
  (``training.non_mri``), its threshold the highest out-of-fold score of any training MRI.
  Five more statistics feed it: how bright the head's rim is against its interior (CT and
  radiographs show bone there), where the brightest pixels lie, the fine texture (smooth CT,
  speckled ultrasound), how much of the frame the body fills, and the interior's spread;
* feature distance: the Mahalanobis distance of the model's own pooled features to the nearest
  class mean of the training images (one shrunk covariance shared by the classes, as in Lee et
  al., 2018), with a threshold set high in the training images' tail (99.9% by default;
  ``training.fit_mri_check`` picks 99.95%).

``training.fit_mri_check`` fits both on the training split and checks that at least 99.5% of the
validation MRIs pass; the fitted values live beside the model (``mri_check.npz`` and the
``mri_check`` block of ``tumor_ai.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHECK_FILE = "mri_check.npz"
STATISTICS_SIZE = (224, 224)  # image statistics are taken on a copy this size
HEAD_LEVEL = 0.08  # darker than this is background
FLAT_STEP = 0.004  # a pixel whose neighbours differ by less than this (of the full range) is flat
BOUND_KEYS = (
    "distance_threshold",
    "max_saturation",
    "min_contrast",
    "min_dark_fraction",
    "max_border_brightness",
    "max_saturated_head",
    "max_flat_head",
)
RIM_WIDTH = 8  # pixels of the 224 px copy that count as the head's rim
STATISTICS = (
    "saturation", "contrast", "dark fraction", "border brightness", "saturated head", "flat head",
    "rim to interior", "brightest in rim", "fine texture (log)", "head fraction", "interior spread (log)",
)  # fmt: skip
PROBE_KEYS = (
    "probe_mean", "probe_scale", "probe_hidden_weights", "probe_hidden_bias", "probe_weights", "probe_bias", "probe_threshold",
)  # fmt: skip
MESSAGE = "This does not look like a brain MRI slice, so no tumour class is given."


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """The ``STATISTICS`` of an RGB ``uint8`` image, taken on a 224x224 copy.

    The "head" is everything brighter than the background, holes filled; its rim is the outer
    ``RIM_WIDTH`` pixels and its interior the rest.
    """
    from scipy import ndimage

    from tumor_ai.preprocessing import resize

    small = resize(pixels, STATISTICS_SIZE).astype(np.float32) / 255.0
    saturation = float((small.max(axis=-1) - small.min(axis=-1)).mean())
    gray = small.mean(axis=-1)
    frame = np.ones(gray.shape, dtype=bool)
    margin = STATISTICS_SIZE[0] // 8
    frame[margin:-margin, margin:-margin] = False
    head = gray > HEAD_LEVEL
    size = max(int(head.sum()), 1)
    rows, cols = np.gradient(gray)
    flat = (np.abs(rows) < FLAT_STEP) & (np.abs(cols) < FLAT_STEP)
    return np.array(
        [
            saturation,
            float(gray.std()),
            float((gray < HEAD_LEVEL).mean()),
            float(gray[frame].mean()),
            float((gray >= 0.98)[head].sum() / size),
            float(flat[head].sum() / size),
            *_shape_statistics(gray, ndimage),
        ],
        dtype=np.float32,
    )


def _shape_statistics(gray: np.ndarray, ndimage) -> list[float]:
    """Rim against interior, brightest pixels in the rim, fine texture, head fraction, interior spread."""
    tiny = 1e-3
    head = ndimage.binary_fill_holes(gray > HEAD_LEVEL)
    interior = ndimage.binary_erosion(head, iterations=RIM_WIDTH)
    rim = head & ~interior
    if not interior.any():
        return [0.0, 0.0, float(np.log(tiny)), float(head.mean()), float(np.log(tiny))]
    inside = gray[interior]
    level = float(inside.mean()) + tiny
    brightest = head & (gray >= np.quantile(gray[head], 0.95))
    fine = np.abs(gray - ndimage.gaussian_filter(gray, 1.0))[interior]
    spread = (np.quantile(inside, 0.75) - np.quantile(inside, 0.25)) / (np.median(inside) + tiny)
    return [
        float(gray[rim].mean() / level) if rim.any() else 0.0,
        float((brightest & rim).sum() / max(int(brightest.sum()), 1)),
        float(np.log(np.median(fine) / level + tiny)),
        float(head.mean()),
        float(np.log(spread + tiny)),
    ]


@dataclass
class MriCheck:
    """Fitted bounds on the image statistics and the feature distance of training MRIs."""

    means: np.ndarray  # (classes, features): each class's mean pooled feature
    precision: np.ndarray
    distance_threshold: float
    max_saturation: float
    min_contrast: float
    min_dark_fraction: float
    max_border_brightness: float
    max_saturated_head: float
    max_flat_head: float
    probe: dict[str, np.ndarray] = field(default_factory=dict)  # ``PROBE_KEYS``; empty: no learned refusal

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        statistics: np.ndarray,
        targets: np.ndarray | None = None,
        quantile: float = 0.998,
        distance_quantile: float = 0.999,
        white_quantile: float = 0.999,
        flat_margin: float = 0.15,
        shrinkage: float = 0.1,
    ) -> MriCheck:
        """Fit on training images: bounds at ``quantile`` of their statistics, ``white_quantile`` of the
        saturated share, ``distance_quantile`` of their distances.

        Held-out MRIs lie a little farther from the training features than the training images
        themselves, so the distance bound sits higher in the tail than the statistics' bounds. Some
        MRIs are smooth (upscaled from small originals), so the flat share is bounded only beyond
        the flattest training MRI (by ``flat_margin``): it refuses drawn phantoms, not CT.
        ``targets`` (class indices) give one mean per class; without them there is one mean.
        """
        targets = np.zeros(len(embeddings), int) if targets is None else np.asarray(targets)
        classes = np.unique(targets)
        means = np.stack([embeddings[targets == label].mean(axis=0) for label in classes])
        centred = embeddings - means[np.searchsorted(classes, targets)]
        covariance = centred.T @ centred / max(len(embeddings) - len(classes), 1)
        dimension = covariance.shape[0]
        covariance = (1 - shrinkage) * covariance + shrinkage * np.eye(dimension) * np.trace(covariance) / dimension
        precision = np.linalg.inv(covariance)
        check = cls(means.astype(np.float32), precision.astype(np.float32), *[0.0] * 7)
        check.distance_threshold = float(np.quantile(check.distances(embeddings), distance_quantile))
        check.max_saturation = float(np.quantile(statistics[:, 0], quantile)) + 0.02
        check.min_contrast = float(np.quantile(statistics[:, 1], 1 - quantile)) * 0.8
        check.min_dark_fraction = float(np.quantile(statistics[:, 2], 1 - quantile)) * 0.8
        check.max_border_brightness = float(np.quantile(statistics[:, 3], quantile)) + 0.02
        check.max_saturated_head = float(np.quantile(statistics[:, 4], white_quantile))
        check.max_flat_head = float(statistics[:, 5].max()) + flat_margin
        return check

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding to the nearest class mean."""
        embeddings = np.asarray(embeddings, np.float32)
        squared = [np.einsum("ij,jk,ik->i", embeddings - mean, self.precision, embeddings - mean) for mean in self.means]
        return np.sqrt(np.maximum(np.min(squared, axis=0), 0.0))

    @property
    def probe_threshold(self) -> float:
        return float(self.probe["probe_threshold"]) if self.probe else np.inf

    def probe_scores(self, embeddings: np.ndarray, statistics: np.ndarray) -> np.ndarray:
        """The learned refusal's log-odds that each image is not a brain MRI (0 where the check has none)."""
        if not self.probe:
            return np.zeros(len(statistics), np.float32)
        probe = self.probe
        features = (probe_features(embeddings, statistics) - probe["probe_mean"]) / probe["probe_scale"]
        hidden = np.maximum(features @ probe["probe_hidden_weights"] + probe["probe_hidden_bias"], 0.0)
        return hidden @ probe["probe_weights"] + float(probe["probe_bias"])

    def passes(self, statistics: np.ndarray, distances: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Boolean per image: every test within its training bound, the learned refusal included."""
        learned = self.probe_scores(embeddings, statistics) <= self.probe_threshold
        return self.passes_bounds(statistics, distances) & learned

    def passes_bounds(self, statistics: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """Boolean per image: the statistic bounds and the feature distance, without the learned refusal."""
        return (
            (statistics[:, 0] <= self.max_saturation)
            & (statistics[:, 1] >= self.min_contrast)
            & (statistics[:, 2] >= self.min_dark_fraction)
            & (statistics[:, 3] <= self.max_border_brightness)
            & (statistics[:, 4] <= self.max_saturated_head)
            & (statistics[:, 5] <= self.max_flat_head)
            & (distances <= self.distance_threshold)
        )

    def score(self, images: list[np.ndarray], embeddings: np.ndarray) -> list[tuple[bool, float]]:
        """``(is_mri, distance / threshold)`` per image; a score above 1 is out of distribution."""
        statistics = np.stack([image_statistics(image) for image in images])
        distances = self.distances(embeddings)
        verdicts = self.passes(statistics, distances, np.asarray(embeddings, np.float32))
        return [(bool(ok), round(float(d / self.distance_threshold), 3)) for ok, d in zip(verdicts, distances)]

    def bounds(self) -> dict[str, float]:
        return {
            "distance_threshold": round(self.distance_threshold, 4),
            "max_saturation": round(self.max_saturation, 4),
            "min_contrast": round(self.min_contrast, 4),
            "min_dark_fraction": round(self.min_dark_fraction, 4),
            "max_border_brightness": round(self.max_border_brightness, 4),
            "max_saturated_head": round(self.max_saturated_head, 4),
            "max_flat_head": round(self.max_flat_head, 4),
            **({"probe_threshold": round(self.probe_threshold, 4)} if self.probe else {}),
        }

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CHECK_FILE
        bounds = {key: np.array(value) for key, value in self.bounds().items() if key in BOUND_KEYS}
        np.savez(path, means=self.means, precision=self.precision, **bounds, **self.probe)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MriCheck:
        with np.load(path) as stored:
            probe = {key: stored[key] for key in PROBE_KEYS if key in stored}
            return cls(stored["means"], stored["precision"], *[float(stored[key]) for key in BOUND_KEYS], probe=probe)

    @classmethod
    def in_folder(cls, folder: str | Path) -> MriCheck | None:
        """The check fitted for the model in ``folder``, if it has one."""
        path = Path(folder) / CHECK_FILE
        return cls.load(path) if path.exists() else None


def probe_features(embeddings: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """What the learned refusal reads: the pooled features beside the image statistics."""
    return np.concatenate([np.asarray(embeddings, np.float32), np.asarray(statistics, np.float32)], axis=1)
