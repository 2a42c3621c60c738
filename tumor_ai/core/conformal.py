"""Prediction sets with a coverage guarantee: split-conformal, calibrated on held-out slices.

A single label with "93%" hides which other classes are still plausible. Split-conformal
prediction (Vovk et al., 2005; Angelopoulos & Bates, 2021) turns any classifier's probabilities
into a set of classes that holds the true class with probability at least ``level`` on data like
the calibration set, with no assumption about the model: score each calibration slice by how
little the model believed its true class, take the ``ceil((n + 1) * level) / n`` quantile of those
scores, and at serving time keep every class that scores below it.

Two scores, chosen per model by the smaller average set at equal coverage on validation:

- ``lac`` (least ambiguous classifier; Sadinle et al., 2019): ``1 - p(true class)``; a class is in
  the set when its probability is at least ``1 - threshold``.
- ``aps`` (adaptive prediction sets; Romano et al., 2020), without randomisation: the probability
  mass of every class at least as likely as the true one; a class is in the set when that mass,
  counted down to it, is within the threshold.

The top class is always in the set, so a set is never empty. The thresholds live in the model's
metadata (``conformal``), fitted by ``python -m training.conformal``; a few lines of numpy, not
MAPIE, because MAPIE wants a scikit-learn estimator to refit and these sets need only the
served probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tumor_ai.model.metadata import ConformalRecord

METHODS = ("lac", "aps")
LEVELS = (0.9, 0.95)
SERVED_LEVEL = 0.95  # the level the app, the API and the CLI show


def scores(probabilities: np.ndarray, targets: np.ndarray, method: str) -> np.ndarray:
    """Each calibration slice's nonconformity: how little the model believed its true class."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    true = probabilities[np.arange(len(targets)), targets]
    if method == "lac":
        return 1.0 - true
    if method == "aps":
        return np.sum(np.where(probabilities >= true[:, None], probabilities, 0.0), axis=1)
    raise ValueError(f"unknown conformal method {method!r}; known: {METHODS}")


def threshold(calibration_scores: np.ndarray, level: float) -> float:
    """The finite-sample ``level`` quantile: ``ceil((n + 1) * level)``-th smallest score (1.0 past the data)."""
    ordered = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    rank = math.ceil((len(ordered) + 1) * level)
    return float(ordered[rank - 1]) if rank <= len(ordered) else 1.0


def prediction_sets(probabilities: np.ndarray, cutoff: float, method: str) -> list[list[int]]:
    """Per row, the classes in the set, most probable first; the top class always."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    sets = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")
        if method == "lac":
            chosen = [int(k) for k in order if 1.0 - row[k] <= cutoff]
        elif method == "aps":  # a class's score is the mass of the classes at least as likely: a running sum
            mass = np.cumsum(row[order])
            chosen = [int(k) for k, total in zip(order, mass) if total <= cutoff + 1e-9]
        else:
            raise ValueError(f"unknown conformal method {method!r}; known: {METHODS}")
        sets.append(chosen or [int(order[0])])
    return sets


@dataclass
class CrossFit:
    """Coverage and average set size measured on held-out halves, overall and per true class."""

    coverage: float
    set_size: float
    per_class: dict[str, dict[str, float]]


def cross_fit(
    probabilities: np.ndarray, targets: np.ndarray, labels: list[str], method: str, level: float, repeats: int = 50, seed: int = 0
) -> CrossFit:
    """Calibrate on one random half, measure on the other, swap; averaged over ``repeats`` random halvings.

    Calibrating and measuring on the same slices would flatter the sets; this is what a model
    calibrated on one half of validation does on slices it was not calibrated on.
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    covered, sizes = np.zeros(len(targets)), np.zeros(len(targets))
    for _ in range(repeats):
        order = rng.permutation(len(targets))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for calibrate, measure in (halves, halves[::-1]):
            cutoff = threshold(scores(probabilities[calibrate], targets[calibrate], method), level)
            for index, chosen in zip(measure, prediction_sets(probabilities[measure], cutoff, method)):
                covered[index] += targets[index] in chosen
                sizes[index] += len(chosen)
    covered, sizes = covered / repeats, sizes / repeats
    per_class = {
        label: {"coverage": round(float(covered[mine].mean()), 4), "set_size": round(float(sizes[mine].mean()), 3)}
        for k, label in enumerate(labels)
        if np.any(mine := targets == k)
    }
    return CrossFit(round(float(covered.mean()), 4), round(float(sizes.mean()), 3), per_class)


def plausible(
    probabilities: dict[str, float], conformal: ConformalRecord | None, level: float = SERVED_LEVEL
) -> list[str] | None:
    """The labels plausible at ``level`` under a model's fitted ``conformal`` block, or ``None`` without one."""
    cutoff = conformal.thresholds.get(str(level)) if conformal else None
    if conformal is None or cutoff is None:
        return None
    labels = list(probabilities)
    chosen = prediction_sets(np.array([list(probabilities.values())]), float(cutoff), conformal.method)[0]
    return [labels[k] for k in chosen]


def describe(labels: list[str], level: float, total: int, name=lambda label: label) -> str:
    """A sentence a person reads: one class plainly, three or more as the model cannot tell."""
    shown = [name(label) for label in labels]
    if len(shown) == 1:
        return f"Plausible at {level:.0%}: {shown[0]} only."
    joined = " or ".join([", ".join(shown[:-1]), shown[-1]])
    if len(shown) >= max(3, total - 1):
        return f"Plausible at {level:.0%}: {joined}: the model cannot tell these apart on this slice."
    return f"Plausible at {level:.0%}: {joined}."
