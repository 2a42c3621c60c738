"""Partial labels: slices known to show *a* tumour whose type no one recorded ("tumour, type unknown").

The Kaggle set took its no-tumour class from the Br35H collection but none of Br35H's tumour slices,
so "looks like Br35H" means "no tumour" in the class labels. Br35H's tumour slices break that
confound, but their tumour type is unknown. Such a slice is a *partial label*: the answer is one
of the tumour classes. Its loss is the negative log of the tumour classes' total probability,
``-log(p_glioma + p_meningioma + p_pituitary) = -log(1 - p_notumor)``: the maximum likelihood of
the set-valued label (Cour et al., "Learning from partial labels", JMLR 2011), which pushes the
slice away from "no tumour" and leaves the choice between tumour types to the labelled slices.

A partial folder holds a ``tumour/`` sub-folder (``PARTIAL_FOLDER``) and, optionally, a ``groups.csv``
(``file``, ``slice_group``, ``representative``) naming the copies of each slice; without one the
copies are found as for the main data (``training.duplicates``). It is split by group with the
main data's seed and fraction; the validation slices are scored per distinct slice (one
representative file per group): sensitivity, the share called any tumour class.

In a pipeline a partial slice carries the target ``len(labels)`` (one past the real classes), which
``training.engine.sparse_crossentropy`` reads as "any class but no tumour". No outline is known, so
partial slices get no counterfactual variant and no guidance (their mask is empty).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumor_ai.core.batch import ANY_TUMOUR

PARTIAL_FOLDER = ANY_TUMOUR  # a folder of this name means "one of the tumour classes" (the batch reads it too)
NO_TUMOUR = "notumor"


def label_sets(num_classes: int, partial_classes: list[int] | None, not_class: bool) -> np.ndarray:
    """The classes each set-valued target allows, one row per target past the last class (float32).

    Row 0 is the partial target ``num_classes`` ("one of ``partial_classes``"; no class when there
    are none); row ``1 + c`` is ``not_class_target(c)``, "any class but c", when ``not_class``.
    """
    rows = np.zeros((1 + num_classes, num_classes), dtype=np.float32)
    if partial_classes is not None:
        rows[0, partial_classes] = 1.0
    if not_class:
        rows[1:] = 1.0 - np.eye(num_classes, dtype=np.float32)
    return rows


def not_class_target(label: int, num_classes: int) -> int:
    """The target "any class but ``label``" (``--erased-label not-class``): an erased tumour is no longer this one."""
    return num_classes + 1 + int(label)


def tumour_classes(labels: list[str]) -> list[int]:
    """Indices of the classes a partial "tumour" label allows: every class but no tumour."""
    if NO_TUMOUR not in labels:
        raise SystemExit(f"error: a '{PARTIAL_FOLDER}' label means 'any class but {NO_TUMOUR}', and the classes {labels} lack it")
    return [index for index, label in enumerate(labels) if label != NO_TUMOUR]


@dataclass
class SliceGroups:
    """Which copies are one slice, and which file stands for it when scoring per distinct slice."""

    groups: np.ndarray  # (N,) int group id per file
    representative: np.ndarray  # (N,) bool
    names: np.ndarray  # (N,) the group's name (the CSV's, or a copy group's number): what the split draws by

    def held_out(self, fraction: float, seed: int) -> np.ndarray:
        """Which files fall in the held-out share of groups: a seeded draw over the sorted group names.

        Drawn by name, not by position, so the same groups are held out whether a few files were
        unreadable or the folder is read by another command (``training.evaluate``).
        """
        order = np.random.default_rng(seed).permutation(sorted(set(self.names.tolist())))
        held = set(order[: round(len(order) * fraction)].tolist())
        return np.array([name in held for name in self.names], dtype=bool)


def read_groups(table: str | Path | None, paths: list[str], dataset=None) -> SliceGroups:
    """Groups from a ``groups.csv`` (``file`` relative to the data root), else from copy signatures of ``dataset``.

    A file the CSV does not name is its own group and its own representative. Without a CSV the
    first file of each copy group (``training.duplicates``) represents it.
    """
    if table is not None and Path(table).exists():
        with Path(table).open(newline="") as stream:
            rows = {row["file"]: row for row in csv.DictReader(stream)}
        names: dict[str, int] = {}
        groups, representative, group_names = [], [], []
        for path in paths:
            row = rows.get(path)
            group = row["slice_group"] if row else f"file:{path}"
            group_names.append(group)
            groups.append(names.setdefault(group, len(names)))
            representative.append(bool(int(row.get("representative") or 0)) if row else True)
        groups_array = np.array(groups, dtype=np.int64)
        chosen = np.array(representative, dtype=bool)
        for group in np.unique(groups_array):  # exactly one representative per group, whatever the CSV says
            members = np.flatnonzero(groups_array == group)
            if chosen[members].sum() != 1:
                chosen[members] = False
                chosen[members[0]] = True
        return SliceGroups(groups_array, chosen, np.array(group_names))
    from .duplicates import find_duplicate_pairs, group_ids

    if dataset is None:
        raise ValueError("no groups.csv and no dataset to find copies in")
    groups_array = group_ids(len(paths), find_duplicate_pairs(dataset.signatures, dataset.sha256))
    _, first = np.unique(groups_array, return_index=True)
    chosen = np.zeros(len(paths), dtype=bool)
    chosen[first] = True
    return SliceGroups(
        groups_array,
        chosen,
        np.array([f"copies:{paths[i]}" for i in first[np.searchsorted(np.unique(groups_array), groups_array)]]),
    )


@dataclass
class PartialSet:
    """A partial-label folder decoded at the run's size and split by slice group."""

    root: Path
    paths: list[str]
    images: np.ndarray  # (N, H, W, 3) uint8, cropped and resized as the main data
    slices: SliceGroups
    train: np.ndarray
    validation: np.ndarray
    fingerprint: str

    @property
    def validation_representatives(self) -> np.ndarray:
        """The validation split's files that stand for a distinct slice each."""
        return self.validation[self.slices.representative[self.validation]]


def load_partial(
    root: str | Path, size: tuple[int, int], crop: str, validation_fraction: float, seed: int, cache_dir
) -> PartialSet:
    """Decode ``root/tumour/`` once (cached like the main data) and split it by slice group, seeded."""
    from .data import load_folder

    root = Path(root)
    if not (root / PARTIAL_FOLDER).is_dir():
        raise SystemExit(f"error: --partial {root}: expected a {PARTIAL_FOLDER}/ sub-folder of tumour slices of unknown type")
    dataset = load_folder(root, sizes=[size], labels=[PARTIAL_FOLDER], cache_dir=Path(cache_dir) / "data", crop=crop)
    if not dataset.paths:
        raise SystemExit(f"error: --partial {root}: no readable images in {PARTIAL_FOLDER}/")
    slices = read_groups(root / "groups.csv", dataset.paths, dataset)
    in_validation = slices.held_out(validation_fraction, seed)
    return PartialSet(
        root=root,
        paths=dataset.paths,
        images=dataset.images[size],
        slices=slices,
        train=np.flatnonzero(~in_validation),
        validation=np.flatnonzero(in_validation),
        fingerprint=dataset.fingerprint(),
    )


def partial_loss_metric(labels: list[str]):
    """A Keras metric: the mean partial-label loss over the epoch's partial slices only (``partial_loss`` in the history).

    The epoch loss mixes labelled and partial slices; this one shows whether the tumour slices of
    unknown type are being pulled away from "no tumour".
    """
    import keras
    from keras import ops

    allowed = [1.0 if index in tumour_classes(labels) else 0.0 for index in range(len(labels))]

    class PartialLoss(keras.metrics.Metric):
        def __init__(self, name: str = "partial_loss", **kwargs) -> None:
            super().__init__(name=name, **kwargs)
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None) -> None:
            partial = ops.cast(ops.reshape(y_true, (-1,)) == len(labels), "float32")
            mass = ops.sum(ops.cast(y_pred, "float32") * ops.convert_to_tensor(allowed), axis=-1)
            self.total.assign_add(ops.sum(-ops.log(ops.clip(mass, 1e-7, 1.0)) * partial))
            self.count.assign_add(ops.sum(partial))

        def result(self):
            return ops.divide_no_nan(self.total, self.count)

    return PartialLoss()


def training_metrics(labels: list[str], partial: bool) -> list:
    """What a trainer's history tracks: accuracy, and with partial labels their own loss."""
    return ["accuracy", partial_loss_metric(labels)] if partial else ["accuracy"]


def recipe_loss(recipe, labels: list[str]):
    """The loss a recipe trains with: label smoothing, the partial target, and the erased tumours' target."""
    from . import engine

    return engine.sparse_crossentropy(
        recipe.label_smoothing, tumour_classes(labels) if recipe.partial else None, recipe.erased_label == "not-class"
    )


def recipe_weights(recipe, weights: dict[int, float] | None, num_classes: int) -> dict[int, float] | None:
    """``weights_with_partial`` for what this recipe's targets hold (partial slices, "not this class")."""
    return weights_with_partial(weights, num_classes, bool(recipe.partial), recipe.erased_label == "not-class")


def partial_fraction(recipe, run) -> float:
    """The share of partial slices held out: the recipe's, or none for a refit (it trains on everything)."""
    return 0.0 if run.refit else recipe.validation_fraction


def sensitivity(probabilities: np.ndarray, labels: list[str]) -> dict:
    """How tumour slices of unknown type were called: the share given any tumour class, and the split across classes."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(labels))
    total = max(int(len(predicted)), 1)
    return {
        "slices": int(len(predicted)),
        "sensitivity": round(float(np.isin(predicted, tumour_classes(labels)).mean()) if len(predicted) else 0.0, 4),
        "called": {label: round(int(count) / total, 4) for label, count in zip(labels, counts)},
    }


def mixed_training_set(
    images: np.ndarray, targets: np.ndarray, partial: PartialSet | None, num_classes: int, repeat: int = 1
) -> tuple[np.ndarray, np.ndarray, int]:
    """The training images with the partial slices appended ``repeat`` times (target ``num_classes``), and how many were added."""
    if partial is None or not len(partial.train):
        return images, targets, 0
    rows = np.tile(partial.train, max(1, repeat))
    extra = partial.images[rows]
    return (
        np.concatenate([images, extra]),
        np.concatenate([np.asarray(targets, dtype=np.int32), np.full(len(rows), num_classes, dtype=np.int32)]),
        len(rows),
    )


def weights_with_partial(
    weights: dict[int, float] | None, num_classes: int, partial: bool, not_class: bool = False
) -> dict[int, float] | None:
    """Class weights that also cover the set targets (weight 1): Keras gathers a weight for every label."""
    if weights is None or not (partial or not_class):
        return weights
    extra = {num_classes: 1.0}  # Keras wants every index up to the largest, used or not
    if not_class:
        extra.update({not_class_target(c, num_classes): 1.0 for c in range(num_classes)})
    return {**weights, **extra}


def describe(partial: PartialSet, added: int, repeat: int) -> dict:
    """What the metadata records of the partial labels a run trained with."""
    return {
        "folder": partial.root.name,
        "fingerprint_sha256": partial.fingerprint,
        "images": len(partial.paths),
        "slice_groups": int(len(np.unique(partial.slices.groups))),
        "train_images": int(len(partial.train)),
        "validation_images": int(len(partial.validation)),
        "validation_slices": int(len(partial.validation_representatives)),
        "repeat": repeat,
        "images_per_epoch": added,
        "loss": "-log(sum of the tumour classes' probabilities); no counterfactuals, no guidance",
    }
