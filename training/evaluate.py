"""Score a trained model on any ``<class>/`` image folder, through the same path the app serves.

    python -m training.evaluate --model models/vgg16 --data path/to/Testing --out report.json
    python -m training.evaluate --model models/cnn/split-run --data ../shared/data/brain-tumor-mri/Training \\
        --subset validation --out cnn_validation.json

Writes a JSON report (accuracy, macro-F1, per-class precision/recall/F1, confusion matrix,
expected calibration error before and after the model's temperature, the MRI check's pass rate
and one record per image: path relative to ``--data``, label, predicted, probabilities keyed by
label) and the confusion matrix as a PNG beside it. ``--subset validation`` scores only the
images of the model's own validation split (its ``split.json``), reproducing the model card; for
a refit (trained on every image) point it at the split run the refit came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import class_folders, list_images
from .metrics import classification_report, plot_confusion_matrix


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder, .keras file or hf://USER/REPO[@REVISION]")
    parser.add_argument("--data", required=True, help="folder with one sub-folder of images per class")
    parser.add_argument("--out", required=True, help="report JSON path; the confusion-matrix PNG is written beside it")
    parser.add_argument(
        "--subset",
        choices=["all", "validation", "train"],
        default="all",
        help="'all' images (default), or only the model's own validation/train split from its split.json",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    return parser.parse_args(argv)


def select_subset(items: list[tuple[str, str]], model_source: str, subset: str) -> list[tuple[str, str]]:
    """Keep the images of the model's validation (or train) split, by relative path."""
    if subset == "all":
        return items
    from tumor_ai.model.folder import resolve_source

    split_file = resolve_source(model_source) / "split.json"
    if not split_file.exists():
        raise SystemExit(f"error: --subset {subset} needs {split_file}, written by training.train")
    validation = set(json.loads(split_file.read_text())["validation"])
    return [item for item in items if (item[0] in validation) == (subset == "validation")]


def evaluate(model_source: str, data: str, subset: str = "all", batch_size: int = 32) -> dict:
    """The report as a dict (see the module docstring)."""
    from tumor_ai.core.calibration import softmax
    from tumor_ai.core.imaging import ImageError, read_image
    from tumor_ai.core.inference import Predictor

    predictor = Predictor.from_source(model_source, precision="float32")  # the published figures are float32
    refit = predictor.metadata.training.get("refit")
    if refit and subset != "all":
        raise SystemExit(
            f"error: {model_source} is a refit on every image, so its '{subset}' split is not held out; "
            f"score the split run instead (--model {refit['of']}), whose figures the card publishes"
        )
    labels = predictor.labels
    folders = class_folders(data)
    unknown = [name for name in folders if name not in labels]
    if unknown:
        raise SystemExit(f"error: class folders {unknown} are not classes of this model ({labels})")
    items = select_subset(list_images(data, folders), model_source, subset)
    if not items:
        raise SystemExit(f"error: no images found under {data} for subset '{subset}'")
    root = Path(data)
    records, skipped, outputs = [], [], {"logits": [], "probabilities": [], "passes": []}
    for start in tqdm(range(0, len(items), batch_size), desc=f"evaluating {predictor.name}", unit="batch"):
        images, kept = [], []
        for relative, label in items[start : start + batch_size]:
            try:
                images.append(read_image(root / relative, name=relative).pixels)
                kept.append((relative, label))
            except ImageError as error:
                skipped.append({"path": relative, "reason": str(error)})
        if not images:
            continue
        result = predictor.run(predictor.prepare(images))
        outputs["logits"].append(result["logits"])
        outputs["probabilities"].append(result["probabilities"])
        if predictor.mri_check:
            outputs["passes"].extend(ok for ok, _ in predictor.mri_check.score(images, result["embedding"]))
        for (relative, label), probabilities in zip(kept, result["probabilities"]):
            records.append(
                {
                    "path": relative,
                    "label": label,
                    "predicted": labels[int(np.argmax(probabilities))],
                    "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probabilities)},
                }
            )
    probabilities = np.concatenate(outputs["probabilities"])
    logits = np.concatenate(outputs["logits"])
    targets = np.array([labels.index(record["label"]) for record in records])
    report = classification_report(probabilities, targets, labels)
    report["ece_uncalibrated"] = classification_report(softmax(logits), targets, labels)["ece"]
    report["temperature"] = predictor.temperature
    if outputs["passes"]:
        report["mri_check_pass_rate"] = round(float(np.mean(outputs["passes"])), 4)
    report.update(
        {
            "model": str(model_source),
            "data": str(data),
            "subset": subset,
            "skipped": skipped,
            "predictions": records,
        }
    )
    return report


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    args = parse_args(argv, prog)
    from tumor_ai.model.metadata import ModelSourceError

    try:
        report = evaluate(args.model, args.data, args.subset, args.batch_size)
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot_confusion_matrix(
        report, out.with_suffix(".png"), f"{Path(str(args.model)).name} on {Path(args.data).name} ({args.subset})"
    )
    print(
        f"{report['images']} images: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
        f"ECE {report['ece_uncalibrated']:.4f} raw / {report['ece']:.4f} calibrated"
        + (f", MRI check pass rate {report['mri_check_pass_rate']:.4f}" if "mri_check_pass_rate" in report else "")
        + f"; wrote {out} and {out.with_suffix('.png')}"
    )


if __name__ == "__main__":
    main()
