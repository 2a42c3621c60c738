"""Fit a model's "is this a brain MRI?" check and report how it does.

    python -m training.fit_mri_check --model models/vgg16 --data ../shared/data/brain-tumor-mri/Training

Uses the model's own split (its ``split.json``) and fits on the training images: the bounds of
``tumor_ai.core.mri_check.BOUNDS`` (image statistics at the training MRIs' extremes, the feature
distance at a high quantile) and a learned refusal of other pictures, fitted against the pictures
of ``training.non_mri``: photos and documents, generated pictures, pydicom's three CT slices at
every display window, its four ultrasound clips, drawn radiographs and ultrasound frames, a head
phantom and a bone scan, each with varied copies. Everything is measured first; only if enough
validation MRIs pass are ``mri_check.npz``, the ``mri_check`` block of ``tumor_ai.json`` and the
model card written (a failed gate writes nothing). The rejection rates are reported per family of
picture, both for the fitted check and for a fit that never saw the picture's source (out-of-fold).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tumor_ai.core.mri_check import STATISTICS, STATISTICS_SIZE, MriCheck, Tails, bounds_text, image_statistics, probe_features
from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata, MriCheckRecord
from tumor_ai.publish.card import write_model_card

from .data import FolderDataset, load_folder
from .non_mri import CT_WINDOWS, Picture, general_pictures, medical_pictures, variant
from .split import split_dataset

REQUIRED_PASS_RATE = 0.995
# The learned refusal's threshold: this quantile of the training MRIs' out-of-fold scores, not their highest. The
# Training folder files a few CT slices as meningioma (Tr-me_0364 and Tr-me_0282, a calcified meningioma at a bone
# window): the refusal rightly scores them as not MRI, and a threshold at their score let CT and radiographs through.
PROBE_QUANTILE = 0.999
BOUND_QUANTILE = 1.0  # image-statistic bounds at the training MRIs' extremes: the learned refusal does the rest
PROBE_HIDDEN = 64  # units of the learned refusal's hidden layer
PROBE_PENALTY = 0.1  # its L2 penalty (scikit-learn's alpha)
FOLDS = 5  # out-of-fold scores: MRIs grouped by copy group, other pictures by source
VARIANTS = 6  # re-cropped, re-contrasted JPEG copies of each non-MRI picture in the fit
DISTANCE_QUANTILE = 0.9995  # the CNN refit needs it above 0.999 to pass 99.5% of validation MRIs
CACHE_DIR = ".cache"


def embeddings_of(predictor, inputs: np.ndarray, batch_size: int = 32, desc: str = "features") -> np.ndarray:
    """Pooled features of images that are already the model's ``uint8`` inputs (cropped and resized)."""
    from tumor_ai.core.preprocessing import normalize

    outputs = []
    for start in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch"):
        batch = normalize(inputs[start : start + batch_size], predictor.metadata.preprocessing)
        outputs.append(predictor.run(batch, test_time_flip=False)["embedding"])
    return np.concatenate(outputs)


def cached_embeddings(predictor, inputs: np.ndarray, cache_dir: Path) -> np.ndarray:
    """``embeddings_of``, stored under ``cache_dir`` keyed by everything they depend on.

    That is the input pixels themselves (another set of images of the same count must miss), the
    model file and the metadata that turns pixels into features. Refitting the check with other
    settings then costs seconds, not the forward passes.
    """
    inputs = np.ascontiguousarray(inputs)
    metadata = predictor.metadata
    key = hashlib.sha256((predictor.folder / "model.keras").read_bytes())
    key.update(repr((inputs.shape, inputs.dtype.str, metadata.preprocessing, metadata.embedding_layer)).encode())
    key.update(inputs.data)
    path = Path(cache_dir) / "embeddings" / f"{predictor.name}-{key.hexdigest()[:32]}.npy"
    if path.exists():
        return np.load(path)
    embeddings = embeddings_of(predictor, inputs, desc=f"{predictor.name} features")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, embeddings)
    return embeddings


@dataclass
class Negatives:
    """Non-MRI pictures and their variants as the check reads them, with each one's source and family."""

    embeddings: np.ndarray
    statistics: np.ndarray
    sources: np.ndarray
    families: np.ndarray
    original: np.ndarray  # True for the picture itself, False for a variant
    names: np.ndarray

    def __getitem__(self, keep: np.ndarray) -> Negatives:
        return Negatives(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


def read_negatives(predictor, pictures: list[Picture], variants: int = VARIANTS, seed: int = 0) -> Negatives:
    """Each picture and ``variants`` copies of it (``training.non_mri.variant``), run through the model once."""
    rng = np.random.default_rng(seed)
    pixels, sources, families, original, names = [], [], [], [], []
    for picture in pictures:
        for index in range(variants + 1):
            pixels.append(picture.pixels if index == 0 else variant(picture.pixels, rng))
            names.append(picture.name)
            sources.append(picture.source)
            families.append(picture.family)
            original.append(index == 0)
    embeddings = np.concatenate(
        [
            predictor.run(predictor.prepare(pixels[start : start + 32]), test_time_flip=False)["embedding"]
            for start in tqdm(range(0, len(pixels), 32), desc="non-MRI pictures", unit="batch")
        ]
    )
    statistics = np.stack([image_statistics(picture) for picture in pixels])
    return Negatives(embeddings, statistics, np.array(sources), np.array(families), np.array(original), np.array(names))


@dataclass
class Probe:
    """The fitted learned refusal (``MriCheck.probe``) and the out-of-fold score of every negative."""

    arrays: dict[str, np.ndarray]
    held_out_scores: np.ndarray  # log-odds of each negative from the fold that did not see its source


def fit_probe(embeddings: np.ndarray, statistics: np.ndarray, groups: np.ndarray, negatives: Negatives) -> Probe:
    """The learned refusal: a small network, MRIs against the negatives, on standardised features.

    Its threshold is the ``PROBE_QUANTILE`` quantile of the training MRIs' out-of-fold scores, with folds that keep each
    copy group of MRIs, and each source of other pictures, on one side: scores of pictures the
    network was fitted on would sit too low. The same folds give each negative a score from a fit
    that never saw its source, which ``fit_mri_check`` reports as the rate on unseen kinds of picture.
    """
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.neural_network import MLPClassifier

    mris = probe_features(embeddings, statistics)
    others = probe_features(negatives.embeddings, negatives.statistics)
    mean, scale = mris.mean(axis=0), mris.std(axis=0) + 1e-6
    features = (np.concatenate([mris, others]) - mean) / scale
    targets = np.r_[np.zeros(len(mris)), np.ones(len(others))]
    sources = {source: index for index, source in enumerate(np.unique(negatives.sources))}
    folds = np.r_[groups, [groups.max() + 1 + sources[source] for source in negatives.sources]]
    network = MLPClassifier((PROBE_HIDDEN,), alpha=PROBE_PENALTY, max_iter=400, random_state=0)
    held_out = cross_val_predict(network, features, targets, groups=folds, cv=GroupKFold(FOLDS), method="predict_proba")[:, 1]
    network.fit(features, targets)
    log_odds = np.log(np.clip(held_out, 1e-7, 1 - 1e-7)) - np.log(np.clip(1 - held_out, 1e-7, 1))
    arrays = {
        "probe_mean": mean.astype(np.float32),
        "probe_scale": scale.astype(np.float32),
        "probe_hidden_weights": network.coefs_[0].astype(np.float32),
        "probe_hidden_bias": network.intercepts_[0].astype(np.float32),
        "probe_weights": network.coefs_[1][:, 0].astype(np.float32),
        "probe_bias": np.array(network.intercepts_[1][0], np.float32),
        "probe_threshold": np.array(np.quantile(log_odds[: len(mris)], PROBE_QUANTILE), np.float32),
    }
    return Probe(arrays, log_odds[len(mris) :])


def family_rates(families: np.ndarray, fitted: np.ndarray, left_out: np.ndarray) -> dict[str, dict]:
    """Per family of picture: how many, and the share refused by the fitted check and with its source left out."""
    return {
        family: {
            "pictures": int((families == family).sum()),
            "rejected": round(float(1 - fitted[families == family].mean()), 4),
            "rejected_source_left_out": round(float(left_out[families == family].mean()), 4),
        }
        for family in dict.fromkeys(families)
    }


def fit_mri_check(
    model: str, data: str, cache_dir: str = CACHE_DIR, distance_quantile: float = DISTANCE_QUANTILE, partial: str | None = None
) -> MriCheckRecord:
    """Fit and measure the check, then write it only if enough validation MRIs pass; returns the report.

    Nothing is written before the gate: a check that is too strict leaves the model folder as it was.
    """
    check, report = measure_check(model, data, Path(cache_dir), distance_quantile, partial)
    print(describe(report))
    if report.validation_pass_rate < REQUIRED_PASS_RATE:
        raise SystemExit(
            f"error: only {report.validation_pass_rate:.2%} of validation MRIs pass (at least {REQUIRED_PASS_RATE:.1%} "
            "needed); the check is too strict and nothing was written"
        )
    write_check(Path(model), check, report)
    return report


def write_check(folder: Path, check: MriCheck, report: MriCheckRecord) -> None:
    """The check file, the metadata's ``mri_check`` block and the card, which all state the same check."""
    metadata = ModelMetadata.read(folder / METADATA_FILE)  # read first: a broken folder fails before any write
    metadata.mri_check = report
    check.save(folder)
    (folder / METADATA_FILE).write_text(metadata.to_json())
    write_model_card(folder)


def read_training(predictor, data: str, cache_dir: Path) -> tuple[FolderDataset, np.ndarray, np.ndarray]:
    """The dataset, the pooled features of its model inputs (crop included) and the statistics of its whole images."""
    size = tuple(predictor.metadata.input_size)
    crop = predictor.metadata.crop
    dataset = load_folder(data, sizes=[size], labels=predictor.labels, cache_dir=cache_dir / "data", crop=crop)
    whole = load_folder(data, sizes=[STATISTICS_SIZE], labels=predictor.labels, cache_dir=cache_dir / "data")
    embeddings = cached_embeddings(predictor, dataset.images[size], cache_dir)
    statistics = np.stack([image_statistics(image) for image in tqdm(whole.images[STATISTICS_SIZE], desc="statistics")])
    return dataset, embeddings, statistics


@dataclass
class OtherCollection:
    """The model's partial-label slices (``--partial``: another collection's tumours), split as its training split them."""

    name: str
    embeddings: np.ndarray
    statistics: np.ndarray
    groups: np.ndarray  # slice groups
    train: np.ndarray  # boolean: the slices the model trained on
    representative: np.ndarray  # boolean: one file per distinct slice


def partial_folder(model: Path, given: str | None) -> str | None:
    """The partial-label folder the model trained on: ``--partial``, else the one its metadata records.

    A model that trained on another collection's slices has seen them as MRIs, so its check must
    too; a recorded folder that is not here stops the fit rather than fitting a check without it.
    """
    recorded = (ModelMetadata.read(model / METADATA_FILE).training.arguments or {}).get("partial") or None
    folder = given or recorded
    if folder and not Path(folder).is_dir():
        raise SystemExit(f"error: the model trained on the slices of {folder}, which is not here; pass --partial DIR")
    return folder


def read_other_collection(predictor, folder: str, cache_dir: Path) -> OtherCollection:
    """Features and statistics of the partial folder's slices, with the training split's slice groups."""
    from .partial import PARTIAL_FOLDER, load_partial

    arguments = predictor.metadata.training.arguments or {}
    size = tuple(predictor.metadata.input_size)
    partial = load_partial(
        folder, size, predictor.metadata.crop, arguments.get("validation_fraction", 0.2), arguments.get("seed", 0), cache_dir
    )
    whole = load_folder(folder, sizes=[STATISTICS_SIZE], labels=[PARTIAL_FOLDER], cache_dir=cache_dir / "data")
    assert whole.paths == partial.paths, "one order of the partial folder's files"
    statistics = np.stack([image_statistics(image) for image in tqdm(whole.images[STATISTICS_SIZE], desc="statistics")])
    train = np.zeros(len(partial.paths), bool)
    train[partial.train] = True
    embeddings = cached_embeddings(predictor, partial.images, cache_dir)
    return OtherCollection(Path(folder).name, embeddings, statistics, partial.slices.groups, train, partial.slices.representative)


def measure_check(
    model: str, data: str, cache_dir: Path, distance_quantile: float, partial: str | None = None
) -> tuple[MriCheck, MriCheckRecord]:
    """Fit the check on the training split and measure it on validation MRIs and non-MRI pictures; writes nothing.

    With a partial folder, its training slices join the training MRIs (with their own feature mean and
    their slice groups in the probe's folds) and its held-out slices are reported beside the validation MRIs.
    """
    from tumor_ai.core.inference import Predictor

    predictor = Predictor.from_source(model, precision="float32")  # fitted at full width; bfloat16 serving is checked against it
    predictor.mri_check = None  # the features alone: an old check must not filter what the new one is fitted on
    validation = set(json.loads((Path(model) / "split.json").read_text())["validation"])
    dataset, embeddings, statistics = read_training(predictor, data, cache_dir)
    is_validation = np.array([path in validation for path in dataset.paths])
    train = ~is_validation
    negatives = read_negatives(predictor, general_pictures() + medical_pictures())
    tails = Tails(quantile=BOUND_QUANTILE, white_quantile=BOUND_QUANTILE, distance_quantile=distance_quantile)
    _, _, groups = split_dataset(dataset)  # copy groups: the probe's folds never split one
    fit_embeddings, fit_statistics = embeddings[train], statistics[train]
    fit_targets, fit_groups = dataset.targets[train], groups[train]
    partial = partial_folder(Path(model), partial)
    other = read_other_collection(predictor, partial, cache_dir) if partial else None
    if other is not None:
        fit_embeddings = np.concatenate([fit_embeddings, other.embeddings[other.train]])
        fit_statistics = np.concatenate([fit_statistics, other.statistics[other.train]])
        fit_targets = np.r_[fit_targets, np.full(other.train.sum(), len(dataset.labels))]  # a mean of their own
        fit_groups = np.r_[fit_groups, groups.max() + 1 + other.groups[other.train]]
    check = MriCheck.fit(fit_embeddings, fit_statistics, fit_targets, tails=tails)
    probe = fit_probe(fit_embeddings, fit_statistics, fit_groups, negatives)
    check.probe = probe.arrays
    if other is not None:
        held_out = ~other.train & other.representative
        passed = check.passes(other.statistics[held_out], check.distances(other.embeddings[held_out]), other.embeddings[held_out])
        print(f"held-out {other.name} slices passing: {passed.mean():.2%} of {held_out.sum()} distinct slices")
    distances = check.distances(embeddings)
    passes = check.passes(statistics, distances, embeddings)
    refused = is_validation & ~passes
    reasons = check.failed_tests(statistics[refused], distances[refused], embeddings[refused])
    for path, tests in zip(np.asarray(dataset.paths)[refused], reasons):
        print(f"refused validation MRI {path}: fails {', '.join(tests)}")
    report = MriCheckRecord.from_dict(
        {
            "method": method_text(tails, other.name if other else None),
            "bounds": check.bounds(),
            "command": f"python -m training.fit_mri_check --model {model} --data DATA"
            + (f" --distance-quantile {distance_quantile}" if distance_quantile != DISTANCE_QUANTILE else ""),
            "train_pass_rate": round(float(passes[train].mean()), 4),
            "validation_pass_rate": round(float(passes[is_validation].mean()), 4),
            "validation_images": int(is_validation.sum()),
            "validation_refused": [path for path, ok in zip(dataset.paths, passes) if path in validation and not ok],
            **rejections(check, probe, negatives),
        }
    )
    return check, report


def method_text(tails: Tails, partial: str | None = None) -> str:
    """The check in one sentence for the metadata and the card: the table's bounds, then the learned refusal."""
    return (
        f"{bounds_text(tails)}; and a small network on the pooled features and {len(STATISTICS)} image statistics, "
        f"fitted against CT at {len(CT_WINDOWS)} windows, radiographs, ultrasound, photos and drawn pictures "
        f"({VARIANTS} varied copies of each), scores it no higher than {PROBE_QUANTILE:.1%} of the training MRIs scored "
        "out of fold"
        + (f"; the training MRIs include the {partial} slices the model trained on, with a mean of their own" if partial else "")
        + "."
    )


def rejections(check: MriCheck, probe: Probe, negatives: Negatives) -> dict:
    """How many non-MRI pictures the check refuses, overall and per family, fitted and with their source left out."""
    by_bounds = check.passes_bounds(negatives.statistics, check.distances(negatives.embeddings))
    fitted = by_bounds & (check.probe_scores(negatives.embeddings, negatives.statistics) <= check.probe_threshold)
    left_out = ~(by_bounds & (probe.held_out_scores <= check.probe_threshold))
    chosen = negatives.original
    originals = negatives[chosen]
    general = np.isin(originals.families, ["photo", "generated"])
    return {
        "non_mri_images": int(general.sum()),
        "non_mri_rejection_rate": round(float(1 - fitted[chosen][general].mean()), 4),
        "medical_non_mri_images": int((~general).sum()),
        "medical_non_mri_rejection_rate": round(float(1 - fitted[chosen][~general].mean()), 4),
        "families": family_rates(originals.families, fitted[chosen], left_out[chosen]),
        "non_mri_passed": [name for name, ok in zip(originals.names, fitted[chosen]) if ok],
    }


def describe(report: MriCheckRecord) -> str:
    """The report as a person reads it at the end of a fit."""
    lines = [
        f"validation MRIs passing: {report.validation_pass_rate:.2%} of {report.validation_images} "
        f"(refused: {', '.join(report.validation_refused) or 'none'}); non-MRI pictures rejected: "
        f"{report.non_mri_rejection_rate:.2%} of {report.non_mri_images}; medical non-MRI pictures rejected: "
        f"{report.medical_non_mri_rejection_rate:.2%} of {report.medical_non_mri_images}"
        + (f" (passed: {', '.join(report.non_mri_passed)})" if report.non_mri_passed else "")
    ]
    for family, rates in report.families.items():
        lines.append(
            f"  {family}: {rates.pictures} pictures, {rates.rejected:.0%} rejected, "
            f"{rates.rejected_source_left_out:.0%} when the refusal never saw their source"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.fit_mri_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="local model folder written by training.train")
    parser.add_argument("--data", required=True, help="the dataset it was trained on (<class>/ folders)")
    parser.add_argument("--cache-dir", default=CACHE_DIR, help=f"decoded-image and feature cache (default {CACHE_DIR})")
    parser.add_argument(
        "--distance-quantile",
        type=float,
        default=DISTANCE_QUANTILE,
        help=f"quantile of the training images' feature distances that sets the threshold (default {DISTANCE_QUANTILE})",
    )
    parser.add_argument(
        "--partial",
        help="the partial-label folder the model trained on (default: the one its metadata records); its training "
        "slices join the training MRIs, its held-out slices are reported",
    )
    args = parser.parse_args(argv)
    fit_mri_check(args.model, args.data, args.cache_dir, args.distance_quantile, args.partial)


if __name__ == "__main__":
    main()
