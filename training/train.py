"""Train the custom CNN or the VGG16 transfer model on a ``<class>/`` image folder.

The CNN recipe that produced models/cnn, a split run then a refit (README, "How the CNN is trained"):

    python -m training.train --model cnn --data ../shared/data/brain-tumor-mri/Training --out models/cnn/split-run
    python -m training.train --data ../shared/data/brain-tumor-mri/Training --out models/cnn \\
        --refit models/cnn/split-run

The split run holds out a stratified 20% validation split made by duplicate *group* (see
training.split), chooses the number of epochs by early stopping on validation loss, and fits the
temperature. ``--refit`` then trains the same recipe on the whole folder for that many epochs;
the split run's validation metrics and temperature stay the published estimate. The VGG16
(training.vgg16: 224 px, blocks 4-5 fine-tuned on cached block-3 features), the same two steps:

    python -m training.train --model vgg16 --data ../shared/data/brain-tumor-mri/Training \\
        --out models/vgg16/split-run --backbone-weights ../shared/weights/vgg16_imagenet_notop.weights.h5
    python -m training.train --data ../shared/data/brain-tumor-mri/Training --out models/vgg16 \\
        --refit models/vgg16/split-run

Every run writes into ``--out``: ``model.keras`` (float32, no optimizer state), ``tumor_ai.json``
(the metadata), ``split.json``, ``validation_report.json``, ``history.png``,
``confusion_matrix.png`` and the model card. An interrupted run continues with ``--resume``
(same arguments). Fit the not-an-MRI check afterwards with ``python -m training.fit_mri_check``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from training import engine
from training.data import load_folder
from training.metrics import apply_temperature, classification_report, fit_temperature, plot_confusion_matrix
from training.split import split_dataset

DEFAULTS = {
    "cnn": {
        "input_size": 256,
        "epochs": 22,
        "learning_rate": 2e-3,
        "warmup_epochs": 2,
        "crop": "head",
        "early_stopping_from": 12,
        "preprocessing": "luminance",
    },
    "vgg16": {
        "input_size": 224,
        "epochs": 5,
        "learning_rate": 1e-4,
        "warmup_epochs": 0.25,
        "crop": "none",
        "early_stopping_from": 0,
        "preprocessing": "vgg16",
    },
}
# The normalisations each architecture can be fed (tumor_ai.preprocessing): the VGG16 needs 3 channels.
PREPROCESSING_FOR = {"cnn": ["luminance", "rescale_unit"], "vgg16": ["vgg16", "vgg16_luminance"]}
# What a refit takes from its split run, so both train the same recipe.
RECIPE_KEYS = (
    "model",
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_epochs",
    "label_smoothing",
    "input_size",
    "crop",
    "seed",
    "validation_fraction",
    "rand_augment",
    "precision",
    "head_learning_rate",
    "feature_variants",
    "feature_shift",
    "backbone_weights",
    "preprocessing",
    "acquisition",
    "masks",
    "erase",
    "control",
    "counterfactuals_per_image",
    "erase_grow",
    "guidance",
    "guidance_from",
    "guidance_ramp",
)


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=["cnn", "vgg16"], help="architecture to train (a refit takes it from its split run)")
    parser.add_argument("--data", required=True, help="dataset root: one sub-folder of images per class")
    parser.add_argument("--out", required=True, help="output model folder, e.g. models/cnn")
    parser.add_argument(
        "--epochs", type=int, help="length of the learning-rate schedule in epochs (vgg16: of the fine-tuning); cnn 22, vgg16 5"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument(
        "--learning-rate", type=float, help="peak Adam learning rate after warm-up; cnn 2e-3, vgg16 1e-4 (fine-tuning)"
    )
    parser.add_argument(
        "--warmup-epochs", type=float, help="epochs (may be a fraction) of linear warm-up before the cosine; cnn 2, vgg16 0.25"
    )
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the loss (default 0.1)")
    parser.add_argument("--input-size", type=int, help="square input side in pixels; cnn 256, vgg16 224")
    parser.add_argument(
        "--crop",
        choices=["none", "head"],
        help="crop each slice to the head's bounding square before resizing (recorded in the metadata, "
        "so serving does the same); cnn head, vgg16 none",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="training precision: 'auto' is mixed bfloat16 where the CPU has AVX512-BF16 or AMX, else float32; "
        "the saved model is float32 either way",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and weights (default 0)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="share held out by group (default 0.2)")
    parser.add_argument("--patience", type=int, default=3, help="early-stopping patience on validation loss (default 3)")
    parser.add_argument(
        "--early-stopping-from",
        type=int,
        help="first epoch (0-based) early stopping watches, past the noisy high-rate phase; cnn 12, vgg16 0",
    )
    parser.add_argument("--rand-augment", action="store_true", help="add keras.layers.RandAugment to the augmentation")
    parser.add_argument(
        "--preprocessing",
        choices=sorted(PREPROCESSING_FOR["cnn"] + PREPROCESSING_FOR["vgg16"]),
        help="what the network is fed (tumor_ai.preprocessing). cnn: 'luminance' (one channel, the head's mean "
        "brightness brought to 0.5: no colour or level to tell collections apart; the default) or 'rescale_unit' "
        "(RGB/255); vgg16: 'vgg16' (its caffe preprocess_input; the default) or 'vgg16_luminance' (luminance, as grey RGB)",
    )
    parser.add_argument(
        "--acquisition",
        action="store_true",
        help="vary resolution, blur, noise and JPEG quality in training (training.pipeline.ACQUISITION; "
        "vgg16: in its augmented feature variants)",
    )
    parser.add_argument(
        "--masks",
        help="tumour masks folder (<class>/<stem>.png, e.g. ../shared/data/brain-tumor-mri/masks/Training): "
        "train on counterfactuals, tumours erased and relabelled no tumour, and same-size control erasures "
        "(vgg16: cached as feature variants)",
    )
    parser.add_argument("--erase", type=float, default=0.2, help="with --masks: share of masked images an epoch erases (0.2)")
    parser.add_argument(
        "--control", type=float, default=0.2, help="with --masks: share of all images given a control erasure instead (0.2)"
    )
    parser.add_argument(
        "--erase-grow",
        type=int,
        nargs=2,
        default=[2, 8],
        metavar=("MIN", "MAX"),
        help="with --masks: pixels (of the input) an outline is grown by before it is erased, drawn per variant (2 8)",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=0.0,
        help="with --masks: weight of the term that penalises Grad-CAM mass outside the tumour (training.guidance; 0: off)",
    )
    parser.add_argument("--guidance-from", type=int, default=2, help="first epoch (0-based) of the guidance term (2)")
    parser.add_argument("--guidance-ramp", type=int, default=2, help="epochs over which its weight rises to --guidance (2)")
    parser.add_argument(
        "--counterfactuals-per-image", type=int, default=2, help="with --masks: erased and control variants made per image (2)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its last epoch backup (same arguments)"
    )
    parser.add_argument(
        "--refit",
        metavar="SPLIT_RUN",
        help="train on the whole folder with the recipe and epoch counts of the split run in this folder; "
        "its validation metrics and temperature are carried over as the published estimate",
    )
    parser.add_argument(
        "--stop-after-epochs",
        type=int,
        help="stop after this many epochs of the schedule (a refit sets it to the split run's choice)",
    )
    parser.add_argument(
        "--backbone-weights",
        default="imagenet",
        help="vgg16 only: 'imagenet' (download, the default) or a path to vgg16 no-top weights (.weights.h5)",
    )
    parser.add_argument(
        "--head-epochs",
        type=int,
        default=20,
        help="vgg16 stage 1 (head on frozen blocks): most epochs, stopped early (default 20)",
    )
    parser.add_argument("--head-learning-rate", type=float, default=1e-3, help="vgg16 stage-1 Adam rate (default 1e-3)")
    parser.add_argument(
        "--feature-variants",
        type=int,
        default=3,
        help="vgg16: cached block-3 variants per image: clean, mirrored, then seeded augmentations (default 3)",
    )
    parser.add_argument(
        "--feature-shift",
        type=int,
        default=2,
        help="vgg16: random shift of the cached feature map in cells of 8 px, per image and epoch (default 2)",
    )
    parser.add_argument(
        "--distribute",
        choices=["none", "mirrored", "multiworker"],
        default="none",
        help="tf.distribute strategy: 'mirrored' for several local devices, 'multiworker' for several machines "
        "(reads TF_CONFIG; the chief writes --out)",
    )
    parser.add_argument("--cache-dir", default=".cache", help="where decoded images, features and run backups go")
    args = parser.parse_args(argv)
    if args.refit:
        apply_split_run(args, parser)
    if not args.model:
        parser.error("--model is required (or --refit SPLIT_RUN)")
    if args.guidance and not args.masks:
        parser.error("--guidance needs --masks: it steers the map towards the tumour outlines")
    if args.guidance and args.distribute == "multiworker":
        parser.error("--guidance trains with its own step (training.guidance); use --distribute none or mirrored")
    if args.preprocessing is not None and args.preprocessing not in PREPROCESSING_FOR[args.model]:
        parser.error(f"--preprocessing {args.preprocessing}: --model {args.model} takes {PREPROCESSING_FOR[args.model]}")
    if args.model == "vgg16" and args.distribute != "none":
        parser.error("--distribute is for --model cnn; the vgg16 trainer reads features cached on this machine")
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def apply_split_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Take the recipe and the chosen epoch count from the split run's metadata."""
    from tumor_ai.models import METADATA_FILE, ModelMetadata

    path = Path(args.refit) / METADATA_FILE
    if not path.exists():
        parser.error(f"--refit {args.refit}: no {METADATA_FILE} there; run the split run first (same command without --refit)")
    split_run = ModelMetadata.read(path)
    if split_run.training.get("refit"):
        parser.error(f"--refit {args.refit} is itself a refit; point it at the split run")
    for key in RECIPE_KEYS:
        if key in split_run.training.get("arguments", {}):
            setattr(args, key, split_run.training["arguments"][key])
    args.preprocessing = split_run.preprocessing  # older split runs did not record it as an argument
    args.stop_after_epochs = int(split_run.training["chosen_epochs"])
    if "head" in split_run.training.get("stage_epochs", {}):
        args.head_epochs = int(split_run.training["stage_epochs"]["head"])


def validation_probabilities(model, images: np.ndarray, targets: np.ndarray, preprocessing: str) -> tuple[np.ndarray, np.ndarray]:
    """The saved (float32) model's softmax on the validation images, as served, and on their mirror images."""
    from training.pipeline import make_pipeline

    outputs = []
    for pixels in (images, np.ascontiguousarray(images[:, :, ::-1])):
        validation, _ = make_pipeline(pixels, targets, preprocessing, 64)
        outputs.append(model.predict(validation, verbose=0))
    return outputs[0], outputs[1]


def flip_averaged(probabilities: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Softmax of the mean logits of an image and its mirror image, which is what serving computes.

    ``log p`` is the logits less a per-row constant, so the mean of the log-probabilities gives
    the same softmax as the mean of the logits.
    """
    from tumor_ai.calibration import softmax

    return softmax((np.log(np.clip(probabilities, 1e-12, 1)) + np.log(np.clip(mirrored, 1e-12, 1))) / 2)


def test_time_flip_choice(probabilities: np.ndarray, mirrored: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """Whether averaging with the mirror image is worth its cost: adopted only when validation accuracy rises.

    The flip doubles every forward pass the app makes (about +0.5 s on a CPU without bfloat16 for
    the VGG16), so a lower NLL at equal accuracy no longer buys it.
    """
    plain = classification_report(probabilities, targets, labels)
    flipped = classification_report(flip_averaged(probabilities, mirrored), targets, labels)
    gain = flipped["accuracy"] > plain["accuracy"]
    return {
        "adopted": bool(gain),
        "without": {key: plain[key] for key in ("accuracy", "macro_f1", "nll")},
        "with": {key: flipped[key] for key in ("accuracy", "macro_f1", "nll")},
        "rule": "adopted only when validation accuracy rises (it doubles the cost of every answer)",
    }


def build_metadata(args, argv, dataset, groups, train_idx, validation_idx, result, report, temperature, ece_after, seconds):
    """Fill the model's metadata: how it was trained, on what, how well. The one place a model folder's JSON is made."""
    from tumor_ai.models import library_versions

    metadata = result.metadata
    metadata.name = Path(args.out).name
    metadata.training = {
        **metadata.training,
        "command": "python -m training.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "arguments": {key: value for key, value in vars(args).items() if key not in ("data", "out", "cache_dir", "refit")},
        "precision": engine.resolve_precision(args.precision),
        "class_weights": result.class_weights,
        "epochs_run": {stage: len(history.get("loss", [])) for stage, history in result.histories.items()},
        "chosen_epochs": result.chosen_epochs,
        **({"stage_epochs": result.stage_epochs} if result.stage_epochs else {}),
        "throughput": result.throughput,
        "seconds": round(seconds),
        "machine": engine.machine(),
        "optimizer": "Adam",
        "loss": f"sparse_categorical_crossentropy (label smoothing {args.label_smoothing})",
    }
    metadata.dataset = {
        "name": "Brain Tumor MRI Dataset (Nickparvar, Kaggle), Training split",
        "license": "CC0-1.0",
        "root": Path(args.data).name,
        "fingerprint_sha256": dataset.fingerprint(),
        "images": len(dataset.paths),
        "skipped": len(dataset.skipped),
        "duplicate_groups": int(len(np.unique(groups))),
        "split": "stratified by class, whole duplicate groups (exact, re-contrasted and mirrored copies) on one side",
        "validation_fraction": args.validation_fraction,
        "seed": args.seed,
        "train_images": int(len(train_idx)),
        "validation_images": int(len(validation_idx)),
    }
    metadata.libraries = library_versions()
    if args.refit:
        from tumor_ai.models import METADATA_FILE, ModelMetadata

        split_run = ModelMetadata.read(Path(args.refit) / METADATA_FILE)
        metadata.training["refit"] = {
            "of": args.refit,
            "split_run_command": split_run.training.get("command"),
            "split_run_seconds": split_run.training.get("seconds"),
            "epochs": result.chosen_epochs,
            "note": "trained on every image of the folder; the validation metrics and temperature are the split run's",
        }
        metadata.metrics = split_run.metrics
        metadata.calibration = split_run.calibration
        metadata.test_time_flip = split_run.test_time_flip
        if "test_time_flip" in split_run.training:
            metadata.training["test_time_flip"] = split_run.training["test_time_flip"]
        return metadata
    metadata.metrics = {
        "validation": {key: report[key] for key in ("images", "accuracy", "macro_f1", "ece", "nll")},
        "validation_per_class": report["per_class"],
    }
    metadata.calibration = {
        "temperature": round(temperature, 4),
        "ece_before": report["ece"],
        "ece_after": ece_after,
        "fitted_on": "validation split",
    }
    return metadata


def plot_history(histories: dict, path: Path, title: str) -> None:
    """Loss and accuracy per epoch for each training stage (validation curves where there are any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    offset = 0
    for stage, history in histories.items():
        epochs = np.arange(1, len(history.get("loss", [])) + 1) + offset
        for axis, metric in zip(axes, ("loss", "accuracy")):
            if metric in history:
                axis.plot(epochs, history[metric], label=f"{stage} train")
            if f"val_{metric}" in history:
                axis.plot(epochs, history[f"val_{metric}"], label=f"{stage} validation", linestyle="--")
            axis.set_xlabel("epoch")
            axis.set_title(metric)
        offset = epochs[-1] if len(epochs) else offset
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_model_folder(
    out: Path, model, metadata, histories: dict, report: dict | None, validation_paths: list[str], args
) -> None:
    """Everything a model folder holds, written in one place: weights, metadata, split, report, plots, card."""
    from tumor_ai.card import write_model_card
    from tumor_ai.models import save_model_folder

    save_model_folder(model, metadata, out)
    split = {"seed": args.seed, "validation_fraction": args.validation_fraction, "validation": validation_paths}
    (out / "split.json").write_text(json.dumps(split, indent=0) + "\n")
    plot_history(
        histories, out / "history.png", f"{out.name}: training history" + (" (refit, no validation)" if args.refit else "")
    )
    if args.refit:
        for name in ("validation_report.json", "confusion_matrix.png"):
            if (Path(args.refit) / name).resolve() != (out / name).resolve():
                shutil.copyfile(Path(args.refit) / name, out / name)
    else:
        (out / "validation_report.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_confusion_matrix(report, out / "confusion_matrix.png", f"{out.name} on the group-aware validation split")
    write_model_card(out)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    args = parse_args(argv, prog)
    import keras

    from tumor_ai.models import without_optimizer

    policy = engine.resolve_precision(args.precision)
    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    started = time.time()
    size = (args.input_size, args.input_size)
    dataset = load_folder(args.data, sizes=[size], cache_dir=Path(args.cache_dir) / "data", crop=args.crop)
    if len(dataset.labels) < 2:
        raise SystemExit("error: need at least two class folders")
    train_idx, validation_idx, groups = split_dataset(dataset, args.validation_fraction, args.seed)
    if args.refit:
        train_idx, validation_idx = np.arange(len(dataset.paths)), np.array([], dtype=np.int64)
    print(
        f"{len(dataset.paths)} images in {len(np.unique(groups))} duplicate groups; train {len(train_idx)}, "
        f"validation {len(validation_idx)}; precision {policy}"
        + (f"; refit for {args.stop_after_epochs} epochs" if args.refit else "")
    )
    strategy = engine.distribution_strategy(args.distribute)
    if args.model == "cnn":
        from training.cnn import train_cnn as trainer
    else:
        from training.vgg16 import train_vgg16 as trainer
    result = trainer(args, dataset, train_idx, validation_idx, strategy)
    keras.mixed_precision.set_dtype_policy("float32")
    model = without_optimizer(result.model)  # float32, as served

    report, temperature, ece_after = None, 1.0, None
    if len(validation_idx):
        targets = dataset.targets[validation_idx]
        probabilities, mirrored = validation_probabilities(
            model, dataset.images[size][validation_idx], targets, result.metadata.preprocessing
        )
        flip = test_time_flip_choice(probabilities, mirrored, targets, dataset.labels)
        result.metadata.test_time_flip = flip["adopted"]
        result.metadata.training["test_time_flip"] = flip
        print(f"test-time flip: {flip}")
        if flip["adopted"]:
            probabilities = flip_averaged(probabilities, mirrored)
        report = classification_report(probabilities, targets, dataset.labels)
        temperature = fit_temperature(probabilities, targets)
        ece_after = classification_report(apply_temperature(probabilities, temperature), targets, dataset.labels)["ece"]
    metadata = build_metadata(
        args, argv, dataset, groups, train_idx, validation_idx, result, report, temperature, ece_after, time.time() - started
    )
    if not engine.is_chief():
        print("worker done; the chief writes the model")
        return
    split_source = Path(args.refit) / "split.json" if args.refit else None
    validation_paths = (
        json.loads(split_source.read_text())["validation"] if split_source else [dataset.paths[i] for i in validation_idx]
    )
    write_model_folder(out, model, metadata, result.histories, report, validation_paths, args)
    if report:
        print(
            f"validation accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
            f"ECE {report['ece']:.4f} -> {ece_after:.4f} at T={temperature:.2f}; saved {out}"
        )
    else:
        print(f"refit on {len(train_idx)} images for {result.chosen_epochs} epochs; saved {out}")


if __name__ == "__main__":
    main()
