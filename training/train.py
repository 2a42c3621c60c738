"""Train a registered architecture (``tumor_ai.model.registry``: the custom CNN, the VGG16) on a ``<class>/`` folder.

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
``confusion_matrix.png``, ``reliability_diagram.png`` (its bins in the metadata's ``calibration.reliability``) and
the model card. An interrupted run continues with ``--resume``
(same arguments). Fit the not-an-MRI check afterwards with ``python -m training.fit_mri_check``.

The recipe flags are the fields of each architecture's typed ``Recipe`` (``training.recipe``; e.g.
``training.cnn.CnnRecipe``): unset ones keep that architecture's default, listed below, and a flag
only another architecture's recipe has is refused. The metadata records the recipe field for field.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tumor_ai.model import registry as architectures

from . import engine
from .data import dataset_identity, load_folder
from .metrics import (
    apply_temperature,
    classification_report,
    fit_temperature,
    plot_confusion_matrix,
    plot_reliability,
    reliability_figures,
)
from .recipe import Recipe, RunOptions, add_recipe_arguments, recipe_fields, recipe_from_namespace
from .split import split_dataset


def recipe_classes() -> dict[str, type[Recipe]]:
    """Each registered architecture's recipe class, by name."""
    return {name: architectures.get(name).recipe_class() for name in architectures.names()}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The flags: the run's own, then one per field of every registered recipe (``training.recipe``)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", choices=architectures.names(), help="architecture to train (a refit takes it from its split run)"
    )
    parser.add_argument("--data", required=True, help="dataset root: one sub-folder of images per class")
    parser.add_argument("--out", required=True, help="output model folder, e.g. models/cnn")
    parser.add_argument("--dataset-name", help="the data's name on the model card (default: the first heading of its README)")
    parser.add_argument(
        "--dataset-license",
        help="the data's licence, an SPDX id such as CC0-1.0 (default: the one its README names, else unknown)",
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
        "--distribute",
        choices=["none", "mirrored", "multiworker"],
        default="none",
        help="tf.distribute strategy: 'mirrored' for several local devices, 'multiworker' for several machines "
        "(reads TF_CONFIG; the chief writes --out)",
    )
    parser.add_argument("--cache-dir", default=".cache", help="where decoded images, features and run backups go")
    add_recipe_arguments(parser.add_argument_group("recipe (a refit repeats its split run's)"), recipe_classes())
    return parser


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> tuple[Recipe, RunOptions]:
    """The typed recipe and run options the command line asks for; a contradiction is argparse's one line."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run = RunOptions(
        args.data, args.out, args.cache_dir, args.resume, args.refit, args.stop_after_epochs, args.distribute,
        args.dataset_name, args.dataset_license,
    )  # fmt: skip
    all_fields = set(recipe_fields(recipe_classes()))
    if args.refit:
        given = sorted("--" + key.replace("_", "-") for key in all_fields if getattr(args, key, None) is not None)
        if given or args.model:
            parser.error(f"--refit repeats its split run's recipe: drop {', '.join(given or ['--model'])}")
        recipe = split_run_recipe(run, parser)
    elif not args.model:
        parser.error("--model is required (or --refit SPLIT_RUN)")
    else:
        recipe, foreign = recipe_from_namespace(recipe_classes()[args.model], args.model, args, all_fields)
        if foreign:
            parser.error(f"{', '.join(foreign)}: not part of the {args.model} recipe")
    problem = recipe.check()
    if problem is None and run.distribute != "none" and not recipe.distributable:
        problem = f"--distribute is not for --model {recipe.model}: its trainer reads features cached on this machine"
    if problem is None and recipe.guidance and run.distribute == "multiworker":
        problem = "--guidance trains with its own step (training.guidance); use --distribute none or mirrored"
    if problem:
        parser.error(problem)
    return recipe, run


def split_run_recipe(run: RunOptions, parser: argparse.ArgumentParser) -> Recipe:
    """The split run's recipe, read from its metadata; ``run`` takes its chosen epoch count."""
    from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata

    path = Path(run.refit) / METADATA_FILE
    if not path.exists():
        parser.error(f"--refit {run.refit}: no {METADATA_FILE} there; run the split run first (same command without --refit)")
    split_run = ModelMetadata.read(path)
    if split_run.training.refit:
        parser.error(f"--refit {run.refit} is itself a refit; point it at the split run")
    arguments = dict(split_run.training.arguments or {})
    model = arguments.get("model") or split_run.architecture
    arguments["preprocessing"] = split_run.preprocessing  # older split runs did not record it as an argument
    stages = split_run.training.stage_epochs or {}
    if "head" in stages:
        arguments["head_epochs"] = int(stages["head"])
    if split_run.training.chosen_epochs is None:
        parser.error(f"--refit {run.refit}: its {METADATA_FILE} does not say how many epochs the split run chose")
    run.stop_after_epochs = int(split_run.training.chosen_epochs)
    return recipe_classes()[model].from_arguments({**arguments, "model": model})


def validation_probabilities(model, images: np.ndarray, targets: np.ndarray, preprocessing: str) -> tuple[np.ndarray, np.ndarray]:
    """The saved (float32) model's softmax on the validation images, as served, and on their mirror images."""
    from .pipeline import make_pipeline

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
    from tumor_ai.core.calibration import softmax

    return softmax((np.log(np.clip(probabilities, 1e-12, 1)) + np.log(np.clip(mirrored, 1e-12, 1))) / 2)


FLIP_SIGNIFICANCE = 0.05  # the flip's gain must be unlikely by chance (one-sided exact McNemar test)


def test_time_flip_choice(probabilities: np.ndarray, mirrored: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """Whether averaging with the mirror image is worth its cost: adopted only for a gain chance is unlikely to give.

    The flip doubles every forward pass the app makes (about +0.14 s per VGG16 answer on a CPU
    without bfloat16), so two more validation images right out of a thousand do not buy it: the
    images it puts right must outnumber those it puts wrong by more than a fair coin would (an exact
    McNemar test on the images where the two disagree, p below ``FLIP_SIGNIFICANCE``).
    """
    from scipy.stats import binomtest

    plain = classification_report(probabilities, targets, labels)
    averaged = flip_averaged(probabilities, mirrored)
    flipped = classification_report(averaged, targets, labels)
    right_plain, right_flipped = probabilities.argmax(axis=1) == targets, averaged.argmax(axis=1) == targets
    gained, lost = int((right_flipped & ~right_plain).sum()), int((right_plain & ~right_flipped).sum())
    p_value = binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue if gained + lost else 1.0
    return {
        "adopted": bool(gained > lost and p_value < FLIP_SIGNIFICANCE),
        "without": {key: plain[key] for key in ("accuracy", "macro_f1", "nll")},
        "with": {key: flipped[key] for key in ("accuracy", "macro_f1", "nll")},
        "rule": (
            f"adopted only when the images it puts right outnumber those it puts wrong beyond chance (exact McNemar, "
            f"p < {FLIP_SIGNIFICANCE}; it doubles the cost of every answer): {gained} put right, {lost} put wrong, "
            f"p = {p_value:.2f}"
        ),
    }


@dataclass
class Split:
    """Which images trained and which were held out, and the duplicate group of every image."""

    train: np.ndarray
    validation: np.ndarray
    groups: np.ndarray


@dataclass
class Validation:
    """What the held-out images said of the saved model: nothing for a refit, which carries its split run's."""

    report: dict | None = None
    temperature: float = 1.0
    ece_after: float | None = None
    reliability: dict | None = None  # the reliability diagram's bins, before and after the temperature


def build_metadata(
    recipe: Recipe, run: RunOptions, command: str, dataset, split: Split, result, validation: Validation, seconds: float
):
    """Fill the model's metadata: how it was trained, on what, how well. The one place a model folder's JSON is made."""
    from tumor_ai.model.folder import library_versions
    from tumor_ai.model.metadata import (
        Calibration,
        ClassScores,
        DatasetRecord,
        MachineRecord,
        Metrics,
        ReliabilityRecord,
        Scores,
        Throughput,
    )

    metadata = result.metadata
    metadata.name = Path(run.out).name
    training = metadata.training  # the trainer may have recorded its own parts (features, partial labels, guided map)
    training.command = command
    training.out = str(run.out)
    training.arguments = recipe.arguments()
    training.distribute = run.distribute
    training.precision = engine.resolve_precision(recipe.precision)
    training.class_weights = result.class_weights
    training.epochs_run = {stage: len(history.get("loss", [])) for stage, history in result.histories.items()}
    training.chosen_epochs = result.chosen_epochs
    training.stage_epochs = result.stage_epochs or None
    training.throughput = Throughput.from_dict(result.throughput) if result.throughput else None
    training.seconds = round(seconds)
    training.machine = MachineRecord.from_dict(engine.machine())
    training.optimizer = "Adam"
    training.loss = f"sparse_categorical_crossentropy (label smoothing {recipe.label_smoothing})"
    identity = dataset_identity(run.data, run.dataset_name, run.dataset_license)
    metadata.dataset = DatasetRecord(
        name=identity.name,
        license=identity.license,
        root=Path(run.data).name,
        fingerprint_sha256=dataset.fingerprint(),
        images=len(dataset.paths),
        skipped=len(dataset.skipped),
        duplicate_groups=int(len(np.unique(split.groups))),
        split="stratified by class, whole duplicate groups (exact, re-contrasted and mirrored copies) on one side",
        validation_fraction=recipe.validation_fraction,
        seed=recipe.seed,
        train_images=int(len(split.train)),
        validation_images=int(len(split.validation)),
    )
    metadata.libraries = library_versions()
    if run.refit:
        return carry_split_run_estimate(metadata, run.refit, result.chosen_epochs)
    report = validation.report
    metadata.metrics = Metrics(
        Scores(**{key: report[key] for key in ("images", "accuracy", "macro_f1", "ece", "nll")}),
        {label: ClassScores(**row) for label, row in report["per_class"].items()},
    )
    metadata.calibration = Calibration(
        temperature=round(validation.temperature, 4),
        ece_before=report["ece"],
        ece_after=validation.ece_after,
        fitted_on="validation split",
        reliability=ReliabilityRecord.from_dict(validation.reliability) if validation.reliability else None,
    )
    return metadata


def carry_split_run_estimate(metadata, refit: str, epochs: int):
    """A refit's metadata: its split run's metrics, temperature and flip choice, and where they came from."""
    from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata, RefitRecord

    split_run = ModelMetadata.read(Path(refit) / METADATA_FILE)
    metadata.training.refit = RefitRecord(
        of=refit,
        split_run_command=split_run.training.command,
        split_run_seconds=split_run.training.seconds,
        epochs=epochs,
        note="trained on every image of the folder; the validation metrics and temperature are the split run's",
    )
    metadata.metrics = split_run.metrics
    metadata.calibration = split_run.calibration
    metadata.test_time_flip = split_run.test_time_flip
    if split_run.training.test_time_flip:
        metadata.training.test_time_flip = split_run.training.test_time_flip
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
    out: Path, model, metadata, histories: dict, report: dict | None, validation_paths: list[str], recipe: Recipe, run: RunOptions
) -> None:
    """Everything a model folder holds, written in one place: weights, metadata, split, report, plots, card."""
    from tumor_ai.model.folder import save_model_folder
    from tumor_ai.model.metadata import RELIABILITY_FILE
    from tumor_ai.publish.card import write_model_card

    save_model_folder(model, metadata, out)
    split = {"seed": recipe.seed, "validation_fraction": recipe.validation_fraction, "validation": validation_paths}
    (out / "split.json").write_text(json.dumps(split, indent=0) + "\n")
    plot_history(
        histories, out / "history.png", f"{out.name}: training history" + (" (refit, no validation)" if run.refit else "")
    )
    if run.refit:
        for name in ("validation_report.json", "confusion_matrix.png", RELIABILITY_FILE):
            source = Path(run.refit) / name
            if source.resolve() != (out / name).resolve() and (name != RELIABILITY_FILE or source.exists()):
                shutil.copyfile(source, out / name)  # an older split run may have no reliability diagram
    else:
        (out / "validation_report.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_confusion_matrix(report, out / "confusion_matrix.png", f"{out.name} on the group-aware validation split")
        write_reliability(out, metadata.calibration, f"{out.name} on the group-aware validation split")
    write_model_card(out)


def write_reliability(out: Path, calibration, title: str) -> None:
    """Draw the reliability diagram of ``calibration.reliability`` (its bins) into the model folder, where there is one."""
    from tumor_ai.model.metadata import RELIABILITY_FILE

    if calibration.reliability is not None:
        plot_reliability(calibration.reliability.to_dict(), calibration.temperature, out / RELIABILITY_FILE, title)


def validate(model, metadata, dataset, validation_idx: np.ndarray, size: tuple[int, int]) -> Validation:
    """Score the saved model on the held-out images as served: the flip choice, the report and the temperature."""
    if not len(validation_idx):
        return Validation()
    from tumor_ai.model.metadata import FlipChoice

    targets = dataset.targets[validation_idx]
    pixels = dataset.images[size][validation_idx]
    probabilities, mirrored = validation_probabilities(model, pixels, targets, metadata.preprocessing)
    flip = test_time_flip_choice(probabilities, mirrored, targets, dataset.labels)
    metadata.test_time_flip = flip["adopted"]
    metadata.training.test_time_flip = FlipChoice.from_dict(flip)
    print(f"test-time flip: {flip}")
    if flip["adopted"]:
        probabilities = flip_averaged(probabilities, mirrored)
    report = classification_report(probabilities, targets, dataset.labels)
    temperature = round(fit_temperature(probabilities, targets), 4)  # as stored and served, so its ECE is the served one
    calibrated = apply_temperature(probabilities, temperature)
    ece_after = classification_report(calibrated, targets, dataset.labels)["ece"]
    return Validation(report, temperature, ece_after, reliability_figures(probabilities, calibrated, targets))


def partial_sensitivity(model, metadata, images: np.ndarray) -> dict:
    """Sensitivity of the saved model on tumour slices of unknown type, as served (flip included when adopted)."""
    from .partial import sensitivity

    probabilities, mirrored = validation_probabilities(model, images, np.zeros(len(images), np.int32), metadata.preprocessing)
    if metadata.test_time_flip:
        probabilities = flip_averaged(probabilities, mirrored)
    return sensitivity(probabilities, metadata.labels)


def validate_partial(model, metadata, recipe: Recipe, run: RunOptions) -> dict | None:
    """Sensitivity on the held-out partial-label slices (``--partial``), one file per distinct slice, as served."""
    if not recipe.partial or run.refit:
        return None
    from tumor_ai.model.metadata import PartialRecord

    from .partial import load_partial

    partial = load_partial(recipe.partial, recipe.size, recipe.crop, recipe.validation_fraction, recipe.seed, run.cache_dir)
    rows = partial.validation_representatives
    if not len(rows):
        return None
    found = partial_sensitivity(model, metadata, partial.images[rows])
    record = metadata.training.partial or PartialRecord(folder=partial.root.name)  # the trainer records it
    metadata.training.partial = replace(record, validation=found)
    print(
        f"held-out {partial.root.name} tumour slices: sensitivity {found['sensitivity']:.4f} "
        f"over {found['slices']} distinct slices"
    )
    return found


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    recipe, run = parse_args(argv, prog)
    import keras

    from tumor_ai.model.folder import without_optimizer

    policy = engine.resolve_precision(recipe.precision)
    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(recipe.seed)
    out = Path(run.out)
    started = time.time()
    dataset = load_folder(run.data, sizes=[recipe.size], cache_dir=Path(run.cache_dir) / "data", crop=recipe.crop)
    if len(dataset.labels) < 2:
        raise SystemExit("error: need at least two class folders")
    split = Split(*split_dataset(dataset, recipe.validation_fraction, recipe.seed))
    if run.refit:
        split.train, split.validation = np.arange(len(dataset.paths)), np.array([], dtype=np.int64)
    print(
        f"{len(dataset.paths)} images in {len(np.unique(split.groups))} duplicate groups; train {len(split.train)}, "
        f"validation {len(split.validation)}; precision {policy}"
        + (f"; refit for {run.stop_after_epochs} epochs" if run.refit else "")
    )
    started_from = None
    if recipe.start_from and not run.refit:
        from .start import check_source

        started_from = check_source(recipe, dataset, [dataset.paths[i] for i in split.validation])
    trainer = architectures.get(recipe.model).trainer()
    result = trainer(recipe, run, dataset, split.train, split.validation, engine.distribution_strategy(run.distribute))
    keras.mixed_precision.set_dtype_policy("float32")
    model = without_optimizer(result.model)  # float32, as served
    validation = validate(model, result.metadata, dataset, split.validation, recipe.size)
    validate_partial(model, result.metadata, recipe, run)
    command = "python -m training.train " + " ".join(sys.argv[1:] if argv is None else argv)
    metadata = build_metadata(recipe, run, command, dataset, split, result, validation, time.time() - started)
    metadata.training.started_from = started_from
    if not engine.is_chief():
        print("worker done; the chief writes the model")
        return
    split_source = Path(run.refit) / "split.json" if run.refit else None
    validation_paths = (
        json.loads(split_source.read_text())["validation"] if split_source else [dataset.paths[i] for i in split.validation]
    )
    write_model_folder(out, model, metadata, result.histories, validation.report, validation_paths, recipe, run)
    if validation.report:
        report = validation.report
        print(
            f"validation accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
            f"ECE {report['ece']:.4f} -> {validation.ece_after:.4f} at T={validation.temperature:.2f}; saved {out}"
        )
    else:
        print(f"refit on {len(split.train)} images for {result.chosen_epochs} epochs; saved {out}")


if __name__ == "__main__":
    main()
