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
  al., 2018), with a threshold set high in the training images' tail (``Tails``).

The bounded tests are the rows of ``BOUNDS``: their names in the file and the metadata, their
fit, the check of an image and their description on the model card all come from that table.
``training.fit_mri_check`` fits the check on the training split and writes it only if enough
validation MRIs pass; the fitted values live beside the model (``mri_check.npz``, versioned by
``FORMAT_VERSION``, and the ``mri_check`` block of ``tumor_ai.json``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHECK_FILE = "mri_check.npz"
FORMAT_VERSION = 2  # of CHECK_FILE; version 1 (the first shipped files) had no ``format_version`` array, else the same
STATISTICS_SIZE = (224, 224)  # image statistics are taken on a copy this size
HEAD_LEVEL = 0.08  # darker than this is background
FLAT_STEP = 0.004  # a pixel whose neighbours differ by less than this (of the full range) is flat
RIM_WIDTH = 8  # pixels of the 224 px copy that count as the head's rim
STATISTICS = (
    "saturation", "contrast", "dark fraction", "border brightness", "saturated head", "flat head",
    "rim to interior", "brightest in rim", "fine texture (log)", "head fraction", "interior spread (log)",
)  # fmt: skip
DISTANCE = "distance"  # the statistic name of the feature distance, which is not an image statistic
PROBE_KEYS = (
    "probe_mean", "probe_scale", "probe_hidden_weights", "probe_hidden_bias", "probe_weights", "probe_bias", "probe_threshold",
)  # fmt: skip
MESSAGE = "This does not look like a brain MRI slice, so no tumour class is given."


@dataclass(frozen=True)
class Tails:
    """How far into the training MRIs' tail the bounds sit: the quantiles a ``Bound.tail`` names.

    Held-out MRIs lie a little farther from the training features than the training images
    themselves, so the distance bound sits higher in the tail than the statistics' bounds.
    """

    quantile: float = 0.998  # the image-statistic bounds
    white_quantile: float = 0.999  # the saturated-white share of the head
    distance_quantile: float = 0.999  # the feature distance


@dataclass(frozen=True)
class Bound:
    """One test of the check: a statistic, the side of the training MRIs it bounds, and how the bound is fitted.

    The bound is ``quantile(training values, q) * scale + offset``: q is the ``Tails`` field that
    ``tail`` names (its complement for a ``min`` bound), or the training MRIs' extreme where ``tail``
    is None. Everything that names or describes the bounds is generated from ``BOUNDS``.
    """

    statistic: str  # a name in ``STATISTICS``, or ``DISTANCE``
    direction: str  # "max": an image passes at or below the bound; "min": at or above it
    tail: str | None  # a ``Tails`` field; None: the training MRIs' extreme
    words: str  # what it measures, for the metadata's method and the model card
    scale: float = 1.0
    offset: float = 0.0

    @property
    def key(self) -> str:
        """Its name in ``mri_check.npz`` and in the metadata's ``bounds``."""
        return "distance_threshold" if self.statistic == DISTANCE else f"{self.direction}_{self.statistic.replace(' ', '_')}"

    def values(self, statistics: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """Its column of ``image_statistics`` rows, or the distances."""
        return distances if self.statistic == DISTANCE else statistics[:, STATISTICS.index(self.statistic)]

    def quantile(self, tails: Tails) -> float:
        tail = getattr(tails, self.tail) if self.tail else 1.0
        return tail if self.direction == "max" else 1 - tail

    def fit(self, values: np.ndarray, tails: Tails) -> float:
        return float(np.quantile(values, self.quantile(tails))) * self.scale + self.offset

    def holds(self, values: np.ndarray, limit: float) -> np.ndarray:
        return values <= limit if self.direction == "max" else values >= limit

    @property
    def side(self) -> str:
        return "at most" if self.direction == "max" else "at least"

    def rule(self, tails: Tails) -> str:
        """How the bound is fitted, in words: "at most the training MRIs' highest plus 0.02"."""
        quantile = self.quantile(tails)
        level = f"{quantile:.2%} quantile" if 0 < quantile < 1 else ("highest" if quantile == 1 else "lowest")
        scaled = f"{self.scale:g} × " if self.scale != 1 else ""
        return f"{self.side} {scaled}the training MRIs' {level}" + (f" plus {self.offset:g}" if self.offset else "")


BOUNDS = (
    Bound(DISTANCE, "max", "distance_quantile", "feature distance (Mahalanobis, of the model's pooled features to the "
          "nearest class mean of the training features, one shrunk covariance shared by the classes)"),
    Bound("saturation", "max", "quantile", "colour saturation", offset=0.02),
    Bound("contrast", "min", "quantile", "contrast", scale=0.8),
    Bound("dark fraction", "min", "quantile", "dark-background fraction", scale=0.8),
    Bound("border brightness", "max", "quantile", "border brightness", offset=0.02),
    Bound("saturated head", "max", "white_quantile", "saturated-white share of the head (a CT window clips bone white)"),
    # Some MRIs are smooth (upscaled from small originals): the flat share refuses drawn phantoms, not CT.
    Bound("flat head", "max", None, "flat share of the head (drawn phantoms are smooth)", offset=0.15),
)  # fmt: skip


def bounds_text(tails: Tails) -> str:
    """The bounded tests and how each bound was fitted, as the start of the metadata's ``method`` sentence."""
    return "An image passes when " + "; ".join(f"its {bound.words} is {bound.rule(tails)}" for bound in BOUNDS)


def bounds_table(bounds: dict[str, float]) -> list[str]:
    """A Markdown table of the tests and their fitted bounds (``MriCheck.bounds``) for the model card; empty without any."""
    rows = [f"| {bound.words} | {bound.side} {bounds[bound.key]:g} |" for bound in BOUNDS if bound.key in bounds]
    return ["| test | an image passes when it is |", "|---|---|", *rows] if rows else []


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """The ``STATISTICS`` of an RGB ``uint8`` image, taken on a 224x224 copy.

    The "head" is everything brighter than the background, holes filled; its rim is the outer
    ``RIM_WIDTH`` pixels and its interior the rest. A slice already measured (Compare asks every model
    about the same slice; a second Predict asks again) is answered from ``STATISTICS_CACHE``.
    """
    from tumor_ai.core.imaging import pixel_key

    key = pixel_key(pixels)
    with _CACHE_LOCK:
        cached = _STATISTICS_CACHE.get(key)
        if cached is not None:
            _STATISTICS_CACHE.move_to_end(key)
            return cached.copy()
    statistics = _image_statistics(pixels)
    with _CACHE_LOCK:
        _STATISTICS_CACHE[key] = statistics
        while len(_STATISTICS_CACHE) > STATISTICS_CACHE:
            _STATISTICS_CACHE.popitem(last=False)
    return statistics.copy()


STATISTICS_CACHE = 32  # slices whose statistics are kept: a few sessions' recent slices, 44 bytes each
_STATISTICS_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_UNIT = np.arange(256, dtype=np.float32) / 255.0  # uint8 -> 0..1, exactly as ``astype(np.float32) / 255.0`` gives it


def _image_statistics(pixels: np.ndarray) -> np.ndarray:
    """``image_statistics`` computed: channel by channel on the ``uint8`` copy, with no float copy of all three
    channels (the values are the same as taking them on the 0..1 float RGB copy)."""
    from scipy import ndimage

    from tumor_ai.core.preprocessing import resize

    small = resize(pixels, STATISTICS_SIZE)
    red, green, blue = (small[..., channel] for channel in range(3))
    spread = _UNIT[np.maximum(np.maximum(red, green), blue)] - _UNIT[np.minimum(np.minimum(red, green), blue)]
    saturation = float(spread.mean())
    gray = _UNIT[red] + _UNIT[green]
    gray += _UNIT[blue]
    gray /= np.float32(3)
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
    head = fill_holes(gray > HEAD_LEVEL, ndimage)
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


def fill_holes(mask: np.ndarray, ndimage) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)`` by one labelling instead of a dilation repeated until nothing changes (a
    third of the time): a hole is a background region, 4-connected as that dilation spreads, that touches no edge."""
    regions, _ = ndimage.label(~mask)
    edges = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return ~np.isin(regions, edges[edges > 0])


@dataclass
class MriCheck:
    """Fitted bounds (one per row of ``BOUNDS``) on the image statistics and feature distance of training MRIs."""

    means: np.ndarray  # (classes, features): each class's mean pooled feature
    precision: np.ndarray
    limits: dict[str, float]  # ``Bound.key``: its fitted bound
    probe: dict[str, np.ndarray] = field(default_factory=dict)  # ``PROBE_KEYS``; empty: no learned refusal

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        statistics: np.ndarray,
        targets: np.ndarray | None = None,
        tails: Tails = Tails(),
        shrinkage: float = 0.1,
    ) -> MriCheck:
        """Fit on training images: each of ``BOUNDS`` by its rule, with the quantiles of ``tails``.

        ``targets`` (class indices) give one mean per class; without them there is one mean.
        """
        targets = np.zeros(len(embeddings), int) if targets is None else np.asarray(targets)
        classes = np.unique(targets)
        means = np.stack([embeddings[targets == label].mean(axis=0) for label in classes])
        centred = embeddings - means[np.searchsorted(classes, targets)]
        covariance = centred.T @ centred / max(len(embeddings) - len(classes), 1)
        dimension = covariance.shape[0]
        covariance = (1 - shrinkage) * covariance + shrinkage * np.eye(dimension) * np.trace(covariance) / dimension
        check = cls(means.astype(np.float32), np.linalg.inv(covariance).astype(np.float32), {})
        distances = check.distances(embeddings)
        check.limits = {bound.key: bound.fit(bound.values(statistics, distances), tails) for bound in BOUNDS}
        return check

    @property
    def distance_threshold(self) -> float:
        return self.limits["distance_threshold"]

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding to the nearest class mean (the product with the precision matrix
        through BLAS: a three-operand ``einsum`` loops in C without it, ten times slower on a 512-wide embedding)."""
        embeddings = np.asarray(embeddings, np.float32)
        squared = [np.einsum("ij,ij->i", (embeddings - mean) @ self.precision, embeddings - mean) for mean in self.means]
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

    def failed_tests(self, statistics: np.ndarray, distances: np.ndarray, embeddings: np.ndarray) -> list[list[str]]:
        """Per image, the keys of the tests it fails (``Bound.key``, and ``probe_threshold`` for the learned refusal).

        Which test refuses a real MRI is what decides how to mend a check that refuses too many.
        """
        failed = [~bound.holds(bound.values(statistics, distances), self.limits[bound.key]) for bound in BOUNDS]
        failed.append(self.probe_scores(embeddings, statistics) > self.probe_threshold)
        keys = [bound.key for bound in BOUNDS] + ["probe_threshold"]
        return [[key for key, column in zip(keys, row) if column] for row in np.stack(failed, axis=1)]

    def passes_bounds(self, statistics: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """Boolean per image: every row of ``BOUNDS`` holds, without the learned refusal."""
        held = [bound.holds(bound.values(statistics, distances), self.limits[bound.key]) for bound in BOUNDS]
        return np.logical_and.reduce(held)

    def score(self, images: list[np.ndarray], embeddings: np.ndarray) -> list[tuple[bool, float]]:
        """``(is_mri, distance / threshold)`` per image; a score above 1 is out of distribution."""
        statistics = np.stack([image_statistics(image) for image in images])
        distances = self.distances(embeddings)
        verdicts = self.passes(statistics, distances, np.asarray(embeddings, np.float32))
        return [(bool(ok), round(float(d / self.distance_threshold), 3)) for ok, d in zip(verdicts, distances)]

    def bounds(self) -> dict[str, float]:
        """The bounds as published (metadata, card) and saved: rounded to 4 decimals."""
        rounded = {bound.key: round(self.limits[bound.key], 4) for bound in BOUNDS}
        return rounded | ({"probe_threshold": round(self.probe_threshold, 4)} if self.probe else {})

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CHECK_FILE
        rounded = self.bounds()  # saved as published, so the card states the bounds that serve
        arrays = {"format_version": np.array(FORMAT_VERSION), "means": self.means, "precision": self.precision}
        arrays |= {bound.key: np.array(rounded[bound.key]) for bound in BOUNDS}
        np.savez(path, **arrays, **self.probe)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MriCheck:
        """Read a saved check; a file without ``format_version`` is version 1, one newer than this code is refused."""
        with np.load(path) as stored:
            version = int(stored["format_version"]) if "format_version" in stored else 1
            if version > FORMAT_VERSION:
                from tumor_ai.model.metadata import ModelSourceError

                raise ModelSourceError(
                    f"{path} is a version {version} check, newer than this tumor-ai reads (up to version "
                    f"{FORMAT_VERSION}); update tumor-ai to serve this model."
                )
            probe = {key: stored[key] for key in PROBE_KEYS if key in stored}
            return cls(stored["means"], stored["precision"], {bound.key: float(stored[bound.key]) for bound in BOUNDS}, probe)

    @classmethod
    def in_folder(cls, folder: str | Path) -> MriCheck | None:
        """The check fitted for the model in ``folder``, if it has one."""
        path = Path(folder) / CHECK_FILE
        return cls.load(path) if path.exists() else None


def probe_features(embeddings: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """What the learned refusal reads: the pooled features beside the image statistics."""
    return np.concatenate([np.asarray(embeddings, np.float32), np.asarray(statistics, np.float32)], axis=1)
