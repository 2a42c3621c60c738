"""Classification metrics (scikit-learn's) and calibration (ECE and the temperature fit, written here)."""

from __future__ import annotations

import numpy as np

from tumor_ai.core.calibration import rescale


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, bins: int = 15) -> dict:
    """A reliability diagram's figures: per equal-width confidence bin (the ECE's), how many images fall in it, their
    accuracy and mean confidence (``None`` for an empty bin), and the bin edges."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, accuracy, mean_confidence = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        counts.append(int(in_bin.sum()))
        accuracy.append(float(correct[in_bin].mean()) if in_bin.any() else None)
        mean_confidence.append(float(confidence[in_bin].mean()) if in_bin.any() else None)
    return {"edges": edges.tolist(), "counts": counts, "accuracy": accuracy, "confidence": mean_confidence}


def binned_calibration_error(bins: dict) -> float:
    """The ECE of a reliability diagram's bins: the gap between accuracy and confidence, weighed by each bin's images."""
    images = sum(bins["counts"])
    error = 0.0
    for count, accuracy, confidence in zip(bins["counts"], bins["accuracy"], bins["confidence"]):
        if count:
            error += count / images * abs(accuracy - confidence)
    return float(error)


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017): gap between confidence and accuracy."""
    if len(targets) == 0:
        return 0.0
    return binned_calibration_error(reliability_bins(probabilities, targets, bins))


def reliability_figures(raw: np.ndarray, calibrated: np.ndarray, targets: np.ndarray, bins: int = 15) -> dict:
    """A reliability diagram's figures before and after the temperature, in the metadata's shape
    (``tumor_ai.model.metadata.ReliabilityRecord``): rounded as the report's figures are, each ECE the report's own."""

    def rounded(values: list) -> list:
        return [None if value is None else round(value, 4) for value in values]

    figures: dict = {"images": int(len(targets))}
    for when, probabilities in (("before", raw), ("after", calibrated)):
        found = reliability_bins(probabilities, targets, bins)
        figures["edges"] = rounded(found["edges"])
        figures[when] = {
            "ece": round(binned_calibration_error(found), 4),
            "counts": found["counts"],
            "accuracy": rounded(found["accuracy"]),
            "confidence": rounded(found["confidence"]),
        }
    return figures


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


def plot_reliability(figures: dict, temperature: float, path, title: str) -> None:
    """Save a reliability diagram (``reliability_figures``' shape) as a PNG: accuracy against mean confidence per bin
    before and after the temperature, each ECE in the legend, and below, how many images each bin holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.array(figures["edges"])
    width = np.diff(edges)
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5.2, 5.6), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfectly calibrated")
    styles = {
        "before": ("#d95f02", "o", "before the temperature (T=1)"),
        "after": ("#1b6ca8", "s", f"after (T={temperature:.2f})"),
    }
    for offset, (when, (colour, marker, name)) in zip((-0.25, 0.25), styles.items()):
        found = figures[when]
        kept = [index for index, count in enumerate(found["counts"]) if count]
        confidence = [found["confidence"][index] for index in kept]
        accuracy = [found["accuracy"][index] for index in kept]
        axis.plot(confidence, accuracy, marker=marker, color=colour, label=f"{name}: ECE {found['ece']:.4f}")
        places = edges[:-1] + width * (0.5 + offset)
        counts.bar(places, np.maximum(found["counts"], 0), width=width / 2, color=colour, log=True)
        for index in kept:
            counts.text(places[index], found["counts"][index], str(found["counts"][index]), ha="center", va="bottom",
                        fontsize=6, color=colour)  # fmt: skip
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_ylabel("accuracy in the bin")
    axis.legend(fontsize=7, loc="lower right")  # below the diagonal: where an over-confident bin would lie
    axis.set_title(f"{title}\n{figures['images']} images, {len(width)} equal-width confidence bins", fontsize=10)
    counts.set_ylabel("images (log)")
    counts.set_xlabel("confidence (the top class's probability)")
    counts.set_ylim(0.8, max(max(figures[when]["counts"]) for when in styles) * 4)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
