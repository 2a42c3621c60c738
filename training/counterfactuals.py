"""Counterfactual slices for training: the tumour erased (relabelled no tumour), or a same-size region elsewhere.

The dataset's tumour classes come mostly from one collection and its no-tumour class from
others, so a network can sort slices by where they came from and never look at a lesion.
With the figshare tumour outlines (``../shared/data/brain-tumor-mri/masks``) a tumour slice
can be turned into what the same slice would be without its tumour: its label is then "no
tumour", whatever collection it looks like. A control erases a region of the same shape away
from the tumour (or anywhere in the head of a no-tumour slice) and keeps the label, so that an
erasure by itself says nothing. Fills vary (smooth, textured, mirrored from the other side of the
head) so that no fill style is a cue either.

Variants are made once per dataset, in the model's input frame (after the head crop and the
resize), and cached beside the decoded images; an epoch swaps some images for a variant
(``training.pipeline``), so it costs the same as an epoch without them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from tumor_ai.core.erase import fill_region
from tumor_ai.core.imaging import read_image
from tumor_ai.core.preprocessing import crop_frame, head_frame

from .localisation import control_region, head_mask
from .pipeline import Swaps
from .recipe import Recipe

ERASED, CONTROL = 0, 1
FILLS = ("smooth", "textured", "mirrored")
# How far an outline is grown before it is erased, in pixels of the model's input (drawn per
# variant). Some figshare outlines cover only part of a lesion; what is left of it after an
# erasure would be a tumour labelled "no tumour". A first run that grew outlines by 1-4 px read
# 29 of 823 held-out tumour slices as no tumour (no-tumour precision 0.916).
GROW = (2, 8)  # the default of ``--erase-grow``
Growth = tuple[int, int] | tuple[tuple[int, int], ...]  # one (MIN, MAX) for all, or one per class index


def class_growth(erase_grow: tuple[int, int], by_class: str, labels: list[str]) -> Growth:
    """The outline growth of each class: ``--erase-grow`` unless ``--erase-grow-class`` names the class.

    ``by_class`` reads ``CLASS=MIN:MAX`` items split by commas (``glioma=4:16``). Without any, or when
    every class ends up alike, the one pair is returned, so the banks made before per-class growth (and
    their cached features) keep their names.
    """
    if not by_class.strip():
        return tuple(erase_grow)
    pairs = {label: tuple(erase_grow) for label in labels}
    for item in by_class.split(","):
        label, _, span = item.strip().partition("=")
        low, _, high = span.partition(":")
        if label not in pairs or not (low.isdigit() and high.isdigit()) or int(low) > int(high):
            raise SystemExit(f"error: --erase-grow-class {item.strip()!r}: expected CLASS=MIN:MAX with CLASS one of {labels}")
        pairs[label] = (int(low), int(high))
    growth = tuple(pairs[label] for label in labels)
    return growth[0] if len(set(growth)) == 1 else growth  # all alike: the one pair, and the bank's old name


def _drawn_growth(grow: Growth, target: int, rng: np.random.Generator) -> int:
    """Pixels one variant's outline is grown by, drawn in its class's range."""
    low, high = grow[target] if isinstance(grow[0], tuple) else grow
    return int(rng.integers(low, high + 1))


@dataclass
class Counterfactuals:
    """Variants of a dataset's images: ``pixels[k]`` replaces image ``source[k]``; ``kind[k]`` is ERASED or CONTROL."""

    pixels: np.ndarray  # (K, H, W, 3) uint8, in the model's input frame
    source: np.ndarray  # (K,) index into the dataset
    kind: np.ndarray  # (K,) ERASED or CONTROL
    fill: np.ndarray  # (K,) index into FILLS
    masks: np.ndarray  # (N, H, W) bool: each dataset image's tumour mask in the input frame (empty: none known)

    def variants_of(self, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """For each of ``count`` dataset images, the indices of its erased and its control variants."""
        erased: list[list[int]] = [[] for _ in range(count)]
        control: list[list[int]] = [[] for _ in range(count)]
        for index, (source, kind) in enumerate(zip(self.source, self.kind)):
            (erased if kind == ERASED else control)[int(source)].append(index)
        return [np.array(item, dtype=np.int64) for item in erased], [np.array(item, dtype=np.int64) for item in control]


def frame_masks(dataset, masks_root: str | Path, size: tuple[int, int], crop: str) -> np.ndarray:
    """Each dataset image's tumour mask brought into the model's input frame (crop, resize); empty where none."""
    masks_root = Path(masks_root)
    out = np.zeros((len(dataset.paths), *size), dtype=bool)
    for index, relative in enumerate(tqdm(dataset.paths, desc="reading tumour masks", unit="img")):
        path = masks_root / Path(relative).with_suffix(".png")
        if not path.exists():
            continue
        mask = np.asarray(Image.open(path)).astype(bool)
        pixels = read_image(Path(dataset.root) / relative, name=relative).pixels
        if mask.shape != pixels.shape[:2] or not mask.any():
            continue
        frame = head_frame(pixels) if crop == "head" else (0, 0, *pixels.shape[:2])
        framed = crop_frame(mask[..., None].astype(np.uint8) * 255, frame)[..., 0]
        resized = Image.fromarray(framed).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out[index] = np.asarray(resized) >= 128
    return out


def fill(pixels: np.ndarray, region: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """``region`` of ``pixels`` hidden in one of three ways, so that no single fill style is a cue.

    smooth: the push-pull fill the app and ``tumor-ai localise`` use; textured: the same plus
    noise as strong as the fine texture around the region; mirrored: the region's mirror image
    across the head's midline, feathered in, where that side is clear of the region (else smooth).
    """
    smooth = fill_region(pixels, region)
    if style == "textured":
        ring = ndimage.binary_dilation(region, iterations=6) & ~region
        gray = pixels.astype(np.float32).mean(axis=-1)
        detail = gray - ndimage.uniform_filter(gray, 3)
        spread = float(detail[ring].std()) if ring.any() else 0.0
        noise = rng.normal(0.0, spread, region.shape)[..., None]
        return np.where(region[..., None], np.clip(smooth + noise, 0, 255), pixels).astype(np.uint8)
    if style == "mirrored":
        mirrored_region = region[:, ::-1]
        if (mirrored_region & ndimage.binary_dilation(region, iterations=4)).any():
            return smooth
        weight = ndimage.gaussian_filter(region.astype(np.float32), 1.5)
        weight = np.where(region, np.maximum(weight, 0.5), weight)[..., None]
        blended = weight * pixels[:, ::-1].astype(np.float32) + (1 - weight) * pixels.astype(np.float32)
        grown = ndimage.binary_dilation(region, iterations=3)[..., None]
        return np.where(grown, np.clip(np.rint(blended), 0, 255), pixels).astype(np.uint8)
    return smooth


def make_variants(
    images: np.ndarray,
    targets: np.ndarray,
    masks: np.ndarray,
    no_tumour: int,
    per_kind: int,
    seed: int,
    grow: Growth = GROW,
):
    """Per image: ``per_kind`` tumour-erased and ``per_kind`` control variants (controls only for no-tumour slices).

    A tumour slice without a known mask gets none: its tumour could be where a control erases.
    The erased region is the mask grown by ``grow`` px (drawn per variant, in the class's own range
    when ``grow`` has one per class); a control is the same grown shape moved elsewhere in the head;
    a no-tumour slice borrows a random tumour's shape, grown as that tumour's class.
    """
    rng = np.random.default_rng(seed)
    shapes = np.flatnonzero(masks.any(axis=(1, 2)))
    pixels, source, kind, fills = [], [], [], []
    for index in tqdm(range(len(images)), desc="erasing tumours and controls", unit="img"):
        image, mask = images[index], masks[index]
        has_mask = bool(mask.any())
        if not has_mask and targets[index] != no_tumour:
            continue
        head = head_mask(image)
        for _ in range(per_kind):
            grown = ndimage.binary_dilation(mask, iterations=_drawn_growth(grow, targets[index], rng)) if has_mask else None
            if has_mask:
                style = int(rng.integers(len(FILLS)))
                pixels.append(fill(image, grown, FILLS[style], rng))
                source.append(index), kind.append(ERASED), fills.append(style)
                shape = grown
            else:
                borrowed = rng.choice(shapes)
                shape = ndimage.binary_dilation(masks[borrowed], iterations=_drawn_growth(grow, targets[borrowed], rng))
            region = control_region(shape, head, rng)
            if region is None:
                continue
            style = int(rng.integers(len(FILLS)))
            pixels.append(fill(image, region, FILLS[style], rng))
            source.append(index), kind.append(CONTROL), fills.append(style)
    return Counterfactuals(
        pixels=np.stack(pixels) if pixels else np.zeros((0, *images.shape[1:]), np.uint8),
        source=np.array(source, dtype=np.int64),
        kind=np.array(kind, dtype=np.int8),
        fill=np.array(fills, dtype=np.int8),
        masks=masks,
    )


def bank_id(dataset, masks_root, size: tuple[int, int], crop: str, per_kind: int, seed: int, grow: Growth) -> str:
    """A short hash of everything that makes a bank: caches built from it (VGG16 features) carry it in their names."""
    key = json.dumps(
        [dataset.fingerprint(), str(Path(masks_root).resolve()), list(size), crop, per_kind, seed, FILLS, _listed(grow)]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _listed(grow: Growth) -> list:
    return [list(pair) for pair in grow] if isinstance(grow[0], tuple) else list(grow)


def load_counterfactuals(
    dataset,
    masks_root: str | Path,
    size: tuple[int, int],
    crop: str,
    per_kind: int = 2,
    seed: int = 0,
    cache_dir: str | Path = ".cache",
    grow: Growth = GROW,
) -> Counterfactuals:
    """The dataset's counterfactual variants, made once and cached under ``cache_dir/counterfactuals``."""
    path = Path(cache_dir) / "counterfactuals" / f"{bank_id(dataset, masks_root, size, crop, per_kind, seed, grow)}.npz"
    if path.exists():
        with np.load(path) as stored:
            return Counterfactuals(**{name: stored[name] for name in stored.files})
    masks = frame_masks(dataset, masks_root, size, crop)
    variants = make_variants(dataset.images[size], dataset.targets, masks, dataset.labels.index("notumor"), per_kind, seed, grow)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **vars(variants))
    return variants


def counterfactual_bank(recipe: Recipe, dataset, cache_dir: str):
    """The ``--masks`` bank for this run's recipe (input size, crop, variants per image, seed, growth), and its id."""
    if "notumor" not in dataset.labels:
        raise SystemExit("error: --masks relabels erased tumours as 'notumor', and this dataset has no such class folder")
    identity = (dataset, recipe.masks, recipe.size, recipe.crop, recipe.counterfactuals_per_image, recipe.seed)
    grow = class_growth(recipe.erase_grow, recipe.erase_grow_class, dataset.labels)
    return load_counterfactuals(*identity, Path(cache_dir), grow), bank_id(*identity, grow)


def epoch_swaps(recipe: Recipe, dataset, bank, pixels: np.ndarray, train_idx: np.ndarray) -> Swaps:
    """What an epoch may swap in for the training images; ``pixels[k]`` stands for the bank's variant ``k``.

    The CNN swaps the variants' pixels, the VGG16 their cached block-3 features.
    """
    erased, control = bank.variants_of(len(dataset.paths))
    print(
        f"counterfactuals: {sum(map(len, erased))} tumour-erased and {sum(map(len, control))} control variants; "
        f"an epoch erases {recipe.erase:.0%} of masked images and gives {recipe.control:.0%} of all images a control"
    )
    return Swaps(
        pixels,
        [erased[i] for i in train_idx],
        [control[i] for i in train_idx],
        dataset.labels.index("notumor"),
        recipe.erase,
        recipe.control,
        len(dataset.labels) if recipe.erased_label == "not-class" else 0,
    )


def counterfactual_swaps(
    recipe: Recipe, dataset, train_idx: np.ndarray, cache_dir: str
) -> tuple[Swaps | None, np.ndarray | None]:
    """The erased and control variants of the training images and their tumour masks (``--masks``), or ``None``s."""
    if not recipe.masks:
        return None, None
    bank, _ = counterfactual_bank(recipe, dataset, cache_dir)
    return epoch_swaps(recipe, dataset, bank, bank.pixels, train_idx), bank.masks[train_idx]
