"""Score a trained model on any ``<class>/`` image folder, through the same path the app serves.

    python -m training.evaluate --model models/vgg16 --data path/to/Testing --out report.json
    python -m training.evaluate --model models/cnn/split-run --data ../shared/data/brain-tumor-mri/Training \\
        --subset validation --out cnn_validation.json

Writes a JSON report (accuracy, macro-F1, per-class precision/recall/F1, confusion matrix,
expected calibration error before and after the model's temperature, the MRI check's pass rate
and one record per image: path relative to ``--data``, label, predicted, probabilities keyed by
label) and the confusion matrix as a PNG beside it. A folder named ``tumour`` means "one of the
tumour classes, type unknown" (``training.partial``): its images are scored for sensitivity (called
any tumour class) and the split across classes, per image and, with ``--groups``, per distinct slice:

    python -m training.evaluate --model models/cnn --data ../shared/data/br35h \\
        --groups ../shared/data/br35h/groups.csv --out .cache/evaluate/cnn_br35h.json

``--subset validation`` scores only the images of the model's own validation split (its ``split.json``),
reproducing the model card; for a refit (trained on every image) point it at the split run the refit came from.

``--reliability`` adds the reliability diagram (accuracy against confidence per bin, before and after the
temperature; ``<out>_reliability.png`` beside the report); on the model's validation split, ``--write`` also stores
it in the model folder (``reliability_diagram.png``, its bins in the metadata's ``calibration.reliability``, the
card), as ``training.train`` writes it for a new model:

    python -m training.evaluate --model models/cnn --data ../shared/data/brain-tumor-mri/Training \\
        --subset validation --reliability --write --out .cache/evaluate/cnn_validation.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import class_folders, list_images
from .metrics import classification_report, plot_confusion_matrix, plot_reliability, reliability_figures
from .partial import PARTIAL_FOLDER, tumour_classes


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
    parser.add_argument(
        "--reliability",
        action="store_true",
        help="add the reliability diagram's bins (before and after the temperature) to the report and draw it beside",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="store what was measured in the model folder's metadata and card: the 'tumour' folder's figures "
        "(other_collections) and, with --reliability on --subset validation, the reliability diagram "
        "(calibration.reliability and reliability_diagram.png)",
    )
    parser.add_argument(
        "--groups",
        help="groups.csv (file, slice_group, representative) naming the copies of each slice: the 'tumour' folder's "
        "sensitivity is then also given per distinct slice",
    )
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


def unseen_partial_slices(items: list[tuple[str, str]], metadata, data: str, groups: str | None) -> tuple[list, str]:
    """A model that trained on part of this tumour folder (``--partial``) is scored on its held-out slice groups only.

    Returns the items to score and what the model saw of the folder (``none`` when it saw nothing).
    """
    trained = metadata.training.partial
    if not trained or trained.folder != Path(data).name or not any(label == PARTIAL_FOLDER for _, label in items):
        return items, "none"
    if not groups:
        raise SystemExit(
            f"error: this model trained on part of {Path(data).name}; pass --groups so the held-out slice groups can be scored"
        )
    from .partial import read_groups

    arguments = metadata.training.arguments or {}
    paths = [path for path, label in items if label == PARTIAL_FOLDER]
    held = read_groups(groups, paths).held_out(arguments.get("validation_fraction", 0.2), arguments.get("seed", 0))
    kept = {path for path, keep in zip(paths, held) if keep}
    seen = f"the other slice groups of {Path(data).name}: only its {len(kept)} held-out images are scored"
    return [item for item in items if item[1] != PARTIAL_FOLDER or item[0] in kept], seen


def tumour_report(records: list[dict], labels: list[str], groups: str | None) -> dict:
    """Sensitivity of the ``tumour`` folder's images, per image and (with a groups file) per distinct slice."""
    from .partial import read_groups, sensitivity

    found = [record for record in records if record["label"] == PARTIAL_FOLDER]
    probabilities = np.array([[record["probabilities"][label] for label in labels] for record in found])
    report = {"per_image": sensitivity(probabilities, labels)}
    if groups:
        slices = read_groups(groups, [record["path"] for record in found])
        report["per_slice"] = sensitivity(probabilities[slices.representative], labels)
        report["groups"] = str(groups)
    return report


def evaluate(
    model_source: str,
    data: str,
    subset: str = "all",
    batch_size: int = 32,
    groups: str | None = None,
    reliability: bool = False,
) -> dict:
    """The report as a dict (see the module docstring); ``reliability`` adds the reliability diagram's bins."""
    from tumor_ai.core.calibration import softmax
    from tumor_ai.core.imaging import ImageError, read_image
    from tumor_ai.core.inference import Predictor

    predictor = Predictor.from_source(model_source, precision="float32")  # the published figures are float32
    refit = predictor.metadata.training.refit
    if refit and subset != "all":
        raise SystemExit(
            f"error: {model_source} is a refit on every image, so its '{subset}' split is not held out; "
            f"score the split run instead (--model {refit.of}), whose figures the card publishes"
        )
    labels = predictor.labels
    folders = class_folders(data)
    unknown = [name for name in folders if name not in labels and name != PARTIAL_FOLDER]
    if PARTIAL_FOLDER in folders:
        tumour_classes(labels)  # a clear error when the model has no no-tumour class
    if unknown:
        raise SystemExit(f"error: class folders {unknown} are not classes of this model ({labels})")
    items = select_subset(list_images(data, folders), model_source, subset)
    items, seen = unseen_partial_slices(items, predictor.metadata, data, groups)
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
        passes = [ok for ok, _ in predictor.mri_check.score(images, result["embedding"])] if predictor.mri_check else []
        outputs["passes"].extend(passes)
        for index, ((relative, label), probabilities) in enumerate(zip(kept, result["probabilities"])):
            records.append(
                {
                    "path": relative,
                    "label": label,
                    "predicted": labels[int(np.argmax(probabilities))],
                    "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probabilities)},
                    **({"passes_mri_check": bool(passes[index])} if passes else {}),
                }
            )
    if not records:
        raise SystemExit(f"error: none of the {len(items)} images under {data} could be read")
    probabilities = np.concatenate(outputs["probabilities"])
    logits = np.concatenate(outputs["logits"])
    labelled = np.array([record["label"] != PARTIAL_FOLDER for record in records])
    report: dict = {"images": len(records)}
    if labelled.any():
        targets = np.array([labels.index(record["label"]) for record in records if record["label"] != PARTIAL_FOLDER])
        report = classification_report(probabilities[labelled], targets, labels)
        raw = softmax(logits[labelled])
        report["ece_uncalibrated"] = classification_report(raw, targets, labels)["ece"]
        if reliability:
            report["reliability"] = reliability_figures(raw, probabilities[labelled], targets)
    if not labelled.all():
        report[PARTIAL_FOLDER] = {**tumour_report(records, labels, groups), "seen_in_training": seen}
        if outputs["passes"]:
            passes = np.array(outputs["passes"], dtype=bool)[~labelled]
            report[PARTIAL_FOLDER]["mri_check_pass_rate"] = round(float(passes.mean()), 4)
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
    args.command = None if argv is None else " ".join(["python -m training.evaluate", *argv])
    from tumor_ai.model.metadata import ModelSourceError

    try:
        report = evaluate(args.model, args.data, args.subset, args.batch_size, args.groups, args.reliability)
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.write:
        write_to_model_folder(args, report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(summary(report, out))
    title = f"{Path(str(args.model)).name} on {Path(args.data).name} ({args.subset})"
    if "accuracy" in report:
        plot_confusion_matrix(report, out.with_suffix(".png"), title)
    if "reliability" in report:
        plot_reliability(report["reliability"], report["temperature"], reliability_picture(out), title)


def reliability_picture(out: Path) -> Path:
    """Where the report's reliability diagram is drawn: beside the report, ``<out>_reliability.png``."""
    return out.with_name(f"{out.stem}_reliability.png")


def write_to_model_folder(args: argparse.Namespace, report: dict) -> None:
    """Store what this run measured in the model folder: the tumour folder's figures (per distinct slice) and the
    reliability diagram (its bins in the metadata, its picture beside); the card is written again."""
    from tumor_ai.model.folder import resolve_source
    from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata
    from tumor_ai.publish.card import write_model_card

    asked = PARTIAL_FOLDER in report or args.reliability
    if not asked:
        raise SystemExit(
            f"error: --write records a '{PARTIAL_FOLDER}' folder's figures (with --groups) or, with --reliability on "
            "--subset validation, the reliability diagram: this run measured neither"
        )
    folder = Path(args.model)
    if not (folder / METADATA_FILE).exists() or resolve_source(args.model) != folder:
        raise SystemExit(f"error: --write needs a local model folder, not {args.model}")
    metadata = ModelMetadata.read(folder / METADATA_FILE)
    command = " ".join(["python -m training.evaluate", *sys.argv[1:]]) if args.command is None else args.command
    written = []
    if PARTIAL_FOLDER in report:
        written.append(record_other_collection(metadata, args.data, command, report))
    if args.reliability:
        written.append(record_reliability(metadata, folder, args.subset, command, report))
    (folder / METADATA_FILE).write_text(metadata.to_json())
    write_model_card(folder)
    print(f"wrote {' and '.join(written)} into {folder / METADATA_FILE} and its card")


def record_other_collection(metadata, data: str, command: str, report: dict) -> str:
    """The tumour folder's figures (per distinct slice) in ``metadata.other_collections``; returns what was written."""
    from tumor_ai.model.metadata import OtherCollectionRecord

    found = report[PARTIAL_FOLDER]
    if "per_slice" not in found:
        raise SystemExit(f"error: --write records a '{PARTIAL_FOLDER}' folder's figures per distinct slice: pass --groups")
    name = Path(data).name
    metadata.other_collections[name] = OtherCollectionRecord(
        data=name,
        command=command,
        images=found["per_image"]["slices"],
        slices=found["per_slice"]["slices"],
        sensitivity=found["per_slice"]["sensitivity"],
        sensitivity_per_image=found["per_image"]["sensitivity"],
        called=found["per_slice"]["called"],
        mri_check_pass_rate=found.get("mri_check_pass_rate"),
        seen_in_training=found["seen_in_training"],
    )
    return f"the {name} figures"


def record_reliability(metadata, folder: Path, subset: str, command: str, report: dict) -> str:
    """The reliability diagram of the model's own validation split, the images its temperature was fitted on, in
    ``metadata.calibration.reliability`` and ``reliability_diagram.png``; returns what was written."""
    from tumor_ai.model.metadata import RELIABILITY_FILE, ReliabilityRecord

    from .train import write_reliability

    expected = metadata.metrics.validation.images if metadata.metrics else None
    if subset != "validation" or "reliability" not in report:
        raise SystemExit(
            "error: --write stores the reliability diagram of the images the temperature was fitted on: "
            "pass --subset validation (and the model's own training folder as --data)"
        )
    if report["reliability"]["images"] != expected:
        raise SystemExit(
            f"error: {report['reliability']['images']} validation images were scored, but the model's metadata records "
            f"{expected}: --data is not the folder it was trained on (or images are missing), so nothing was written"
        )
    calibration = metadata.calibration
    calibration.reliability = ReliabilityRecord.from_dict({**report["reliability"], "command": command})
    write_reliability(folder, calibration, f"{folder.name} on the group-aware validation split")
    recorded = (calibration.ece_before, calibration.ece_after)
    measured = (calibration.reliability.before.ece, calibration.reliability.after.ece)
    agree = "the same as" if measured == recorded else "against"
    print(f"reliability diagram: ECE {measured[0]} -> {measured[1]}, {agree} the metadata's {recorded[0]} -> {recorded[1]}")
    return f"the reliability diagram ({RELIABILITY_FILE})"


def summary(report: dict, out: Path) -> str:
    """The report's headline in one line: accuracy for labelled classes, sensitivity for a tumour folder."""
    parts = [f"{len(report['predictions'])} images"]
    if "accuracy" in report:
        parts.append(
            f"accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
            f"ECE {report['ece_uncalibrated']:.4f} raw / {report['ece']:.4f} calibrated"
        )
    if PARTIAL_FOLDER in report:
        tumour = report[PARTIAL_FOLDER]
        for scope, name in (("per_image", "image"), ("per_slice", "distinct slice")):
            if scope in tumour:
                found = tumour[scope]
                called = ", ".join(f"{label} {share:.3f}" for label, share in found["called"].items())
                parts.append(
                    f"'{PARTIAL_FOLDER}' sensitivity per {name} {found['sensitivity']:.4f} of {found['slices']} ({called})"
                )
    if "mri_check_pass_rate" in report:
        parts.append(f"MRI check pass rate {report['mri_check_pass_rate']:.4f}")
    pictures = [out.with_suffix(".png")] if "accuracy" in report else []
    pictures += [reliability_picture(out)] if "reliability" in report else []
    written = f"wrote {', '.join(map(str, [out, *pictures]))}"
    return "; ".join(parts) + f"; {written}"


if __name__ == "__main__":
    main()
