"""Classification metrics (scikit-learn's) and calibration (ECE and the temperature fit, written here)."""

from __future__ import annotations

import numpy as np

from tumor_ai.core.calibration import rescale


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017): gap between confidence and accuracy."""
    if len(targets) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def classification_report(probabilities: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, ECE, NLL."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    classes = list(range(len(labels)))
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(targets, predicted, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(targets, predicted, labels=classes, zero_division=0)
    per_class = {
        label: {
            "precision": round(float(precision[index]), 4),
            "recall": round(float(recall[index]), 4),
            "f1": round(float(f1[index]), 4),
            "support": int(support[index]),
        }
        for index, label in enumerate(labels)
    }
    macro_f1 = f1_score(targets, predicted, labels=classes, average="macro", zero_division=0) if len(targets) else 0.0
    picked = probabilities[np.arange(len(targets)), targets] if len(targets) else np.ones(1)
    return {
        "images": int(len(targets)),
        "accuracy": round(float((predicted == targets).mean()) if len(targets) else 0.0, 4),
        "macro_f1": round(float(macro_f1), 4),
        "ece": round(expected_calibration_error(probabilities, targets), 4),
        "nll": round(float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()), 4),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
    }


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Soften (T > 1) or sharpen (T < 1) softmax outputs, with serving's own softmax (``tumor_ai.core.calibration``)."""
    return rescale(probabilities, temperature)


def fit_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises validation NLL (Guo et al., 2017), by a log-spaced grid search."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 400))
    losses = []
    for temperature in grid:
        scaled = apply_temperature(probabilities, temperature)
        losses.append(-np.log(np.clip(scaled[np.arange(len(targets)), targets], 1e-12, 1.0)).mean())
    return float(grid[int(np.argmin(losses))])


def plot_confusion_matrix(report: dict, path, title: str) -> None:
    """Save the confusion matrix of a report as a PNG with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tumor_ai.model.labels import display_name

    labels = [display_name(label) for label in report["confusion_matrix"]["labels"]]
    matrix = np.array(report["confusion_matrix"]["matrix"])
    figure, axis = plt.subplots(figsize=(5.2, 4.6), dpi=110)
    axis.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axis.text(col, row, str(count), ha="center", va="center", color=colour)
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title}\naccuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
