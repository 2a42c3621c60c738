"""Read a ``<root>/<class>/*`` image folder once into arrays, and show its group-aware split.

Every image is decoded, oriented and brought to the model's input (crop and resize) once, and
the arrays are cached under ``.cache/data`` keyed by the files' names and contents, sizes and crop,
so an epoch reads no JPEG. The same pass computes each image's copy signature (``training.duplicates``).

Run ``python -m training.data --data DIR`` to see the groups and the split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tumor_ai.core.imaging import IMAGE_SUFFIXES, ImageError, read_image
from tumor_ai.core.preprocessing import model_input

from .duplicates import signature
from .split import split_dataset


@dataclass
class FolderDataset:
    """Images of a class-folder dataset, decoded once and resized to the sizes asked for."""

    root: Path
    labels: list[str]
    paths: list[str]
    targets: np.ndarray
    images: dict[tuple[int, int], np.ndarray]
    signatures: dict[str, np.ndarray]
    sha256: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def fingerprint(self) -> str:
        """sha256 over (path, file hash) of every image: names the exact data a model saw."""
        digest = hashlib.sha256()
        for path, file_hash in sorted(zip(self.paths, self.sha256)):
            digest.update(f"{path}\t{file_hash}\n".encode())
        return digest.hexdigest()


# Licence names a dataset README may use, as SPDX identifiers (the model card's `license` of the data).
LICENCES = {"cc0": "CC0-1.0", "cc by 4.0": "CC-BY-4.0", "cc-by-4.0": "CC-BY-4.0", "cc by-sa 4.0": "CC-BY-SA-4.0",
            "cc by-nc 4.0": "CC-BY-NC-4.0", "mit": "MIT", "odbl": "ODbL-1.0"}  # fmt: skip
UNKNOWN_LICENCE = "unknown"


@dataclass(frozen=True)
class DatasetIdentity:
    """What a model card says the training data is: its name and its licence."""

    name: str
    license: str


def dataset_identity(root: str | Path, name: str | None = None, license: str | None = None) -> DatasetIdentity:
    """The dataset's name and licence: the flags if given, else the README beside the class folders (or above them).

    The name is the README's first heading; the licence the first known licence it mentions
    (``LICENCES``). What cannot be found is said plainly ("unknown"), never guessed.
    """
    root = Path(root)
    readme = next((path for path in (root / "README.md", root.parent / "README.md") if path.is_file()), None)
    text = readme.read_text(errors="replace") if readme else ""
    heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("# ")), "")
    lowered = " ".join(text.lower().split())
    found = next((spdx for key, spdx in LICENCES.items() if f" {key}" in f" {lowered}".replace(":", " ")), UNKNOWN_LICENCE)
    return DatasetIdentity(name=name or heading or root.name, license=license or found)


def class_folders(root: str | Path) -> list[str]:
    """Class names are the sub-folder names, sorted; a new folder is a new class."""
    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a folder of <class>/ sub-folders")
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise SystemExit(f"error: {root} has no class sub-folders (expected {root}/<class>/*.jpg)")
    return labels


def list_images(root: str | Path, labels: list[str] | None = None) -> list[tuple[str, str]]:
    """``(relative path, label)`` for every image file under ``root/<label>/``, sorted."""
    root = Path(root)
    labels = labels or class_folders(root)
    items = []
    for label in labels:
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                items.append((path.relative_to(root).as_posix(), label))
    return items


def load_folder(
    root: str | Path,
    sizes: list[tuple[int, int]],
    labels: list[str] | None = None,
    cache_dir: str | Path | None = ".cache/data",
    crop: str = "none",
) -> FolderDataset:
    """Decode every image once (any size/mode), crop and resize to each of ``sizes``; skip unreadable files.

    ``crop`` and the resize are ``tumor_ai.core.preprocessing.model_input``, exactly what serving does.
    Results are cached under ``cache_dir`` keyed by ``cache_key``, so the second run of a script
    takes seconds.
    """
    root = Path(root)
    labels = labels or class_folders(root)
    items = list_images(root, labels)
    cache_file = Path(cache_dir) / f"{cache_key(root, items, sizes, crop, labels)}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        return _from_cache(root, labels, sizes, cache_file)
    paths, targets, shas, skipped = [], [], [], []
    images: dict[tuple[int, int], list[np.ndarray]] = {tuple(size): [] for size in sizes}
    signatures: dict[str, list] = {}
    for relative, label in tqdm(items, desc=f"reading {root.name}", unit="img"):
        data = (root / relative).read_bytes()
        try:
            loaded = read_image(data, name=relative)
        except ImageError as error:
            skipped.append((relative, str(error)))
            continue
        paths.append(relative)
        targets.append(labels.index(label))
        shas.append(hashlib.sha256(data).hexdigest())
        for size in images:
            images[size].append(model_input(loaded.pixels, size, crop)[0])
        for name, value in signature(loaded.pixels).items():
            signatures.setdefault(name, []).append(value)
    for relative, reason in skipped:
        print(f"skipped {relative}: {reason}")
    dataset = FolderDataset(
        root=root,
        labels=labels,
        paths=paths,
        targets=np.array(targets, dtype=np.int32),
        images={size: np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8) for size, arrays in images.items()},
        signatures={name: np.stack(values) for name, values in signatures.items()},
        sha256=shas,
        skipped=skipped,
    )
    if cache_file:
        _to_cache(dataset, cache_file)
    return dataset


def cache_key(root: Path, items: list[tuple[str, str]], sizes: list[tuple[int, int]], crop: str, labels: list[str]) -> str:
    """What the decoded arrays depend on: each file's relative name, label and sha256 of its bytes, the sizes and crop.

    Content, not size or time: an edited image of the same byte size misses, and the same files in a
    moved or renamed dataset folder hit. Names stay in the key because the cache returns them
    (``split.json`` refers to images by name). Hashing 5,712 JPEGs takes about a second.
    """
    files = [(path, label, hashlib.sha256((root / path).read_bytes()).hexdigest()) for path, label in items]
    return hashlib.sha256(json.dumps([sizes, crop, labels, files]).encode()).hexdigest()[:32]


def _to_cache(dataset: FolderDataset, cache_file: Path) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"image_{h}x{w}": array for (h, w), array in dataset.images.items()}
    arrays.update({f"sig_{name}": value for name, value in dataset.signatures.items()})
    meta = {"paths": dataset.paths, "sha256": dataset.sha256, "skipped": dataset.skipped}
    np.savez(cache_file, targets=dataset.targets, meta=np.array(json.dumps(meta)), **arrays)


def _from_cache(root: Path, labels: list[str], sizes: list[tuple[int, int]], cache_file: Path) -> FolderDataset:
    with np.load(cache_file) as stored:
        meta = json.loads(str(stored["meta"]))
        return FolderDataset(
            root=root,
            labels=labels,
            paths=meta["paths"],
            targets=stored["targets"],
            images={tuple(size): stored[f"image_{size[0]}x{size[1]}"] for size in sizes},
            signatures={key[4:]: stored[key] for key in stored.files if key.startswith("sig_")},
            sha256=meta["sha256"],
            skipped=[tuple(item) for item in meta["skipped"]],
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.data",
        description="Read a <class>/ image folder, group its near-duplicate images and show the "
        "group-aware stratified train/validation split that training uses.",
    )
    parser.add_argument("--data", required=True, help="dataset root with one sub-folder per class")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="share of each class held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    args = parser.parse_args(argv)
    dataset = load_folder(args.data, sizes=[])
    train_idx, validation_idx, groups = split_dataset(dataset, args.validation_fraction, args.seed)
    sizes = np.bincount(groups)
    print(
        f"{len(dataset.paths)} images, {len(dataset.skipped)} skipped, {len(sizes)} groups "
        f"({int((sizes > 1).sum())} with copies; largest {int(sizes.max())})"
    )
    shuffled = np.random.default_rng(args.seed).permutation(len(groups))
    random_validation, random_train = shuffled[: len(validation_idx)], shuffled[len(validation_idx) :]
    print(
        f"a random split of the same size would leave {np.isin(groups[random_validation], groups[random_train]).mean():.1%} "
        f"of validation images with a copy or neighbour in training; this split leaves "
        f"{np.isin(groups[validation_idx], groups[train_idx]).mean():.1%}"
    )
    for index, label in enumerate(dataset.labels):
        n_train = int((dataset.targets[train_idx] == index).sum())
        n_val = int((dataset.targets[validation_idx] == index).sum())
        print(f"  {label:<12} train {n_train:5d}  validation {n_val:5d}")


if __name__ == "__main__":
    main()
