"""Split a dataset into training and validation by duplicate group, stratified by class.

Every copy and neighbouring slice of a validation image stays out of training (see
``training.duplicates``), so validation scores slices the model has never seen in any form.
``python -m training.data --data DIR`` prints the split.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .duplicates import find_duplicate_pairs, group_ids


class Splittable(Protocol):
    """What a split reads of a dataset (``training.data.FolderDataset`` has it), so neither module imports the other."""

    paths: list[str]
    targets: np.ndarray
    signatures: dict[str, np.ndarray]
    sha256: list[str]


def group_split(
    targets: np.ndarray, groups: np.ndarray, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation split that keeps every group whole, seeded.

    Groups are shuffled and each goes to validation while its majority class still has room
    for ``validation_fraction`` of that class's images, so class ratios stay close on both sides.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(groups))
    num_classes = int(targets.max()) + 1 if len(targets) else 0
    quota = np.bincount(targets, minlength=num_classes) * validation_fraction
    taken = np.zeros(num_classes)
    members = {g: np.flatnonzero(groups == g) for g in order}
    validation = []
    for group in order:
        idx = members[group]
        majority = np.bincount(targets[idx], minlength=num_classes).argmax()
        if taken[majority] + len(idx) <= quota[majority] + 0.5:
            validation.extend(idx.tolist())
            taken += np.bincount(targets[idx], minlength=num_classes)
    validation_idx = np.array(sorted(validation), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(targets)), validation_idx)
    return train_idx, validation_idx


def split_dataset(
    dataset: Splittable, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the dataset's copies and split by group: ``(train_idx, validation_idx, group_ids)``."""
    pairs = find_duplicate_pairs(dataset.signatures, dataset.sha256)
    groups = group_ids(len(dataset.paths), pairs)
    train_idx, validation_idx = group_split(dataset.targets, groups, validation_fraction, seed)
    return train_idx, validation_idx, groups
