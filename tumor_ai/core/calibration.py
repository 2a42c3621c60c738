"""Temperature scaling (Guo et al., 2017): the one softmax that serving and evaluation share."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``: calibrated probabilities when the temperature is fitted."""
    scaled = np.asarray(logits, np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at another temperature: ``log p`` are the logits up to a per-row constant."""
    return softmax(np.log(np.clip(probabilities, 1e-12, 1.0)), temperature)
