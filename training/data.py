"""Read a ``<root>/<class>/*`` image folder, group its near-duplicates, split it by group.

The Kaggle brain-tumour MRI set holds byte copies, re-contrasted copies and left-right
mirrored copies of the same slice. A random split puts copies on both sides and inflates
validation accuracy, so we link copies into groups and split whole groups:

* signature of each image: a 64-bit DCT perceptual hash of its rank-equalised 32x32 thumbnail
  and of its mirror, and the thumbnail itself (rank equalisation makes contrast changes vanish);
* two images are linked when their thumbnails correlate at ``>= 0.99``, or when their hashes
  are within 6 bits and the thumbnails correlate at ``>= 0.90`` (straight or mirrored).
  At ``>= 0.95`` the pair is a copy ("near" or "mirror"); between 0.90 and 0.95 it is a
  "similar" image, in this set mostly a neighbouring slice of the same patient, grouped too
  because no patient ids exist. Requiring the hash as well keeps groups from chaining through
  dark head outlines: the largest group here has 34 images.

Run ``python -m training.data --data DIR`` to see the groups and the split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tumor_ai.imaging import ImageError, read_image
from tumor_ai.preprocessing import resize

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm"}
THUMB = 32
HASH_DISTANCE = 6
CORRELATION = 0.90
STRONG_CORRELATION = 0.99
COPY_CORRELATION = 0.95


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


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT32 = _dct_matrix(32)


def _phash(gray32: np.ndarray) -> np.uint64:
    low = (_DCT32 @ gray32 @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return np.uint64(int("".join("1" if bit else "0" for bit in bits), 2))


def _ranks(gray: np.ndarray) -> np.ndarray:
    """Average ranks of the pixel values (ties share a rank): undoes any monotone contrast change."""
    _, inverse, counts = np.unique(gray.ravel(), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    return average[inverse].reshape(gray.shape)


def _unit(values: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm vector, so correlation is a dot product."""
    flat = values.ravel().astype(np.float32)
    flat -= flat.mean()
    return flat / (np.linalg.norm(flat) + 1e-8)


def signature(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Perceptual hashes and thumbnails of an image and of its left-right mirror.

    Both are computed on the rank-equalised thumbnail, so re-contrasted copies match.
    """
    gray = np.asarray(Image.fromarray(pixels).convert("L").resize((THUMB, THUMB), Image.Resampling.BOX))
    ranks = _ranks(gray.astype(np.float64))
    mirror = ranks[:, ::-1]
    return {
        "hash": np.array(_phash(ranks)),
        "hash_mirror": np.array(_phash(mirror)),
        "thumb": _unit(ranks),
        "thumb_mirror": _unit(mirror),
        "pixel_hash": np.array(hashlib.sha1(pixels.tobytes()).hexdigest()),
    }


def load_folder(
    root: str | Path,
    sizes: list[tuple[int, int]],
    labels: list[str] | None = None,
    cache_dir: str | Path | None = ".cache/data",
) -> FolderDataset:
    """Decode every image once (any size/mode), resize to each of ``sizes``; skip unreadable files.

    Results are cached under ``cache_dir`` keyed by the file list and sizes, so the second run
    of a script takes seconds.
    """
    root = Path(root)
    labels = labels or class_folders(root)
    items = list_images(root, labels)
    key_src = json.dumps([str(root.resolve()), sizes, labels, [(p, (root / p).stat().st_size) for p, _ in items]])
    cache_file = Path(cache_dir) / f"{hashlib.sha256(key_src.encode()).hexdigest()[:16]}.npz" if cache_dir else None
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
            images[size].append(resize(loaded.pixels, size))
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


def _hamming(hashes_a: np.ndarray, hashes_b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(hashes_a[:, None] ^ hashes_b[None, :]).astype(np.int16)


@dataclass
class DuplicatePair:
    """Two images judged to be copies of one slice, and how."""

    i: int
    j: int
    kind: str  # "exact" (same bytes), "pixel" (same pixels), "near", "mirror", "similar"
    correlation: float
    hash_distance: int


def find_duplicate_pairs(
    signatures: dict[str, np.ndarray],
    sha256: list[str],
    other: dict[str, np.ndarray] | None = None,
    other_sha256: list[str] | None = None,
    hash_distance: int = HASH_DISTANCE,
    correlation: float = CORRELATION,
    strong_correlation: float = STRONG_CORRELATION,
    block: int = 1024,
) -> list[DuplicatePair]:
    """All copy pairs within one set, or between ``signatures`` (i) and ``other`` (j)."""
    same_set = other is None
    other = signatures if same_set else other
    other_sha256 = sha256 if same_set else other_sha256
    pairs = []
    count = len(sha256)
    for start in range(0, count, block):
        stop = min(start + block, count)
        thumbs = signatures["thumb"][start:stop]
        direct = thumbs @ other["thumb"].T
        mirrored = thumbs @ other["thumb_mirror"].T
        dist_direct = _hamming(signatures["hash"][start:stop], other["hash"])
        dist_mirror = _hamming(signatures["hash"][start:stop], other["hash_mirror"])
        linked_direct = (direct >= strong_correlation) | ((dist_direct <= hash_distance) & (direct >= correlation))
        linked_mirror = (mirrored >= strong_correlation) | ((dist_mirror <= hash_distance) & (mirrored >= correlation))
        rows, cols = np.nonzero(linked_direct | linked_mirror)
        for row, col in zip(rows, cols):
            i = start + int(row)
            j = int(col)
            if same_set and j <= i:
                continue
            is_mirror = bool(linked_mirror[row, col]) and (
                not linked_direct[row, col] or mirrored[row, col] > direct[row, col] + 0.02
            )
            kind = None
            if sha256[i] == other_sha256[j]:
                kind = "exact"
            elif signatures["pixel_hash"][i] == other["pixel_hash"][j]:
                kind = "pixel"
            corr = float(mirrored[row, col] if is_mirror else direct[row, col])
            if kind is None:
                kind = "similar" if corr < COPY_CORRELATION else "mirror" if is_mirror else "near"
            dist = int(dist_mirror[row, col] if is_mirror else dist_direct[row, col])
            pairs.append(DuplicatePair(i, j, kind, corr, dist))
    return pairs


def group_ids(count: int, pairs: list[DuplicatePair]) -> np.ndarray:
    """Union-find over copy pairs: one id per group of copies (singletons get their own)."""
    parent = list(range(count))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        root_i, root_j = find(pair.i), find(pair.j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)
    roots = np.array([find(i) for i in range(count)])
    _, ids = np.unique(roots, return_inverse=True)
    return ids.astype(np.int32)


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
    dataset: FolderDataset, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the dataset's copies and split by group: ``(train_idx, validation_idx, group_ids)``."""
    pairs = find_duplicate_pairs(dataset.signatures, dataset.sha256)
    groups = group_ids(len(dataset.paths), pairs)
    train_idx, validation_idx = group_split(dataset.targets, groups, validation_fraction, seed)
    return train_idx, validation_idx, groups


def augmentation(seed: int = 0, rand_augment: bool = False):
    """``keras.layers`` augmentation for 0..255 RGB batches: flips, small rotation/zoom/shift/contrast."""
    import keras

    layers = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.04, fill_mode="constant", seed=seed),
        keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed),
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed),
        keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed),
    ]
    if rand_augment:
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.3, seed=seed))
    return keras.Sequential(layers, name="augmentation")


def make_pipeline(
    images: np.ndarray,
    targets: np.ndarray,
    preprocessing: str,
    batch_size: int = 32,
    training: bool = False,
    seed: int = 0,
    rand_augment: bool = False,
):
    """``tf.data`` pipeline over decoded, resized images: (augment) → normalise → batch → prefetch."""
    import tensorflow as tf

    from tumor_ai.preprocessing import NORMALIZERS

    normalizer = NORMALIZERS[preprocessing]
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).cache()
    if training:
        dataset = dataset.shuffle(len(targets), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    augmenter = augmentation(seed, rand_augment) if training else None

    def transform(batch, labels):
        batch = tf.cast(batch, tf.float32)
        if augmenter is not None:
            batch = tf.clip_by_value(augmenter(batch, training=True), 0.0, 255.0)
        return normalizer(batch), labels

    return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


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
