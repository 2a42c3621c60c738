"""Find copies of one slice in an image set: exact, pixel-equal, re-contrasted and mirrored copies.

The Kaggle brain-tumour MRI set holds byte copies, re-contrasted copies and left-right
mirrored copies of the same slice. A random split puts copies on both sides and inflates
validation accuracy, so ``training.split`` keeps each group of copies on one side and
``training.audit`` lists them:

* signature of each image: a 64-bit DCT perceptual hash of its rank-equalised 32x32 thumbnail
  and of its mirror, and the thumbnail itself (rank equalisation makes contrast changes vanish);
* two images are linked when their thumbnails correlate at ``>= 0.99``, or when their hashes
  are within 6 bits and the thumbnails correlate at ``>= 0.90`` (straight or mirrored).
  At ``>= 0.95`` the pair is a copy ("near" or "mirror"); between 0.90 and 0.95 it is a
  "similar" image, in this set mostly a neighbouring slice of the same patient, grouped too
  because no patient ids exist. Requiring the hash as well keeps groups from chaining through
  dark head outlines: the largest group here has 34 images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMB = 32
HASH_DISTANCE = 6
CORRELATION = 0.90
STRONG_CORRELATION = 0.99
COPY_CORRELATION = 0.95


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
    """One id per group of copies (the connected components of the copy pairs; singletons get their own).

    Groups are numbered by their first member, as the split's seeded shuffle of group ids expects:
    the shipped split depends on that numbering.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = [pair.i for pair in pairs], [pair.j for pair in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1 if count else 0, count)
    np.minimum.at(first, labels, np.arange(count))
    _, ids = np.unique(first[labels], return_inverse=True)
    return ids.astype(np.int32)
