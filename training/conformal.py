"""Fit split-conformal prediction sets for a model on its validation split; write them into its metadata and card.

    python -m training.conformal --model models/cnn --data ../shared/data/brain-tumor-mri/Training
    python -m training.conformal --model models/vgg16 --data ../shared/data/brain-tumor-mri/Training

Scores the model's own validation images (its ``split.json``) through the path the app serves
(``training.evaluate``: decode, preprocess, test-time flip, temperature), then for each method
(``tumor_ai.core.conformal``: ``lac``, ``aps``) and level (90%, 95%) measures coverage and the average
set size by cross-fitting: calibrate on one random half, measure on the other, swap, over many
halvings. The method with the smaller sets is kept, its thresholds are fitted on the whole
validation split, and the ``conformal`` block of ``tumor_ai.json`` and the card are rewritten.
A refit (trained on every image) takes the thresholds of its split run (``--split-run``), as it
takes the temperature: an estimate, and the card says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tumor_ai.core.conformal import LEVELS, METHODS, SERVED_LEVEL, cross_fit, scores, threshold

REPEATS = 200  # random halvings the cross-fitted figures average over


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.conformal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder to calibrate and write into, e.g. models/cnn")
    parser.add_argument("--data", required=True, help="the dataset the model was trained on (its validation split is used)")
    parser.add_argument("--split-run", help="for a refit: the split run whose validation split calibrates it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random halvings (default 0)")
    return parser.parse_args(argv)


def fit_sets(probabilities: np.ndarray, targets: np.ndarray, labels: list[str], seed: int = 0, repeats: int = REPEATS) -> dict:
    """The ``conformal`` metadata block: the method with the smaller sets, its thresholds, and every measured figure."""
    measured = {
        method: {str(level): cross_fit(probabilities, targets, labels, method, level, repeats, seed) for level in LEVELS}
        for method in METHODS
    }
    method = min(METHODS, key=lambda name: sum(result.set_size for result in measured[name].values()))
    calibration = scores(probabilities, targets, method)
    return {
        "method": method,
        "thresholds": {str(level): round(threshold(calibration, level), 6) for level in LEVELS},
        "served_level": SERVED_LEVEL,
        "calibrated_on": f"validation split ({len(targets)} images)",
        "cross_fit": {level: vars(result) for level, result in measured[method].items()},
        "compared": {
            name: {level: {"coverage": r.coverage, "set_size": r.set_size} for level, r in results.items()}
            for name, results in measured.items()
        },
        "rule": (
            f"the method with the smaller average set over {', '.join(f'{level:.0%}' for level in LEVELS)}; coverage and "
            f"set size cross-fitted (calibrate on a random half of validation, measure on the other, swap; {repeats} halvings)"
        ),
    }


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    args = parse_args(argv, prog)
    from tumor_ai.model.metadata import METADATA_FILE, ConformalRecord, ModelMetadata, ModelSourceError
    from tumor_ai.publish.card import write_model_card

    from .evaluate import evaluate

    folder = Path(args.model)
    metadata = ModelMetadata.read(folder / METADATA_FILE)
    if metadata.training.refit and not args.split_run:
        raise SystemExit(f"error: {folder} is a refit; pass --split-run {metadata.training.refit.of}")
    try:
        report = evaluate(args.split_run or str(folder), args.data, "validation")
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    labels = metadata.labels
    probabilities = np.array([[record["probabilities"][label] for label in labels] for record in report["predictions"]])
    targets = np.array([labels.index(record["label"]) for record in report["predictions"]])
    block = fit_sets(probabilities, targets, labels, args.seed)
    block["command"] = "python -m training.conformal " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.split_run:
        block["note"] = "thresholds carried from the split run's validation split: an estimate for this refit"
    metadata.conformal = ConformalRecord.from_dict(block)
    (folder / METADATA_FILE).write_text(metadata.to_json())
    write_model_card(folder)
    print(json.dumps({key: block[key] for key in ("method", "thresholds", "cross_fit")}, indent=1))


if __name__ == "__main__":
    main()
