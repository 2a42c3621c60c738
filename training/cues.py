"""How much each collection cue gives away, in the decoded images and in what the CNN is fed.

    python -m training.cues --data ../shared/data/brain-tumor-mri/Training

The no-tumour slices come from other collections than most tumour slices, so statistics that
say nothing about a lesion (colour, brightness level, contrast, sharpness, background noise)
can still tell the classes apart. For each such cue a logistic regression is fitted on the
group-aware split's training images and scored on its validation images (no tumour against
any tumour, ROC AUC; 0.5: the cue says nothing). Three views of the same images: as decoded
(RGB, the head crop and resize serving does), as the network is fed (``--preprocessing``), and
that input after one draw of the training augmentation with the acquisition changes
(``training.pipeline``). A cue still high after both is one the network can still use.

The sequence cues (histogram skewness and kurtosis, the share of bright pixels, CSF brightness
against the head's median) ask whether *how intensities are distributed* gives the collection
away: the no-tumour class came from another mix of sequences (T1, T2, FLAIR) than the tumour
classes. Each cue fitted on the Kaggle split is also scored **across collections**: Br35H tumour
slices (``--other``, tumour of unknown type, one file per distinct slice) against the validation
no-tumour slices. A cue that tells tumour from no tumour would score there as it does within the
split; a collection cue falls to 0.5 or below (it calls the other collection's tumours "no tumour").
A fourth view adds the sequence remaps the trainers can apply (``--sequence``, ``training.sequence``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from .data import load_folder
from .split import split_dataset

CUES = ("colour", "level", "contrast", "sharpness", "background noise")
SEQUENCE_CUES = ("skewness", "kurtosis", "bright share", "CSF / median")
ALL_CUES = (*CUES, *SEQUENCE_CUES)


def cue_values(image: np.ndarray) -> np.ndarray:
    """The cues of one (H, W, C) float image: none of them looks at where or what a lesion is."""
    gray = image.mean(axis=-1)
    head = ndimage.binary_fill_holes(gray > 0.1 * max(float(gray.max()), 1e-6))
    inside = gray[head] if head.any() else gray.ravel()
    level = float(inside.mean()) + 1e-6
    background = gray[~ndimage.binary_dilation(head, iterations=4)]
    median = float(np.median(inside)) + 1e-6
    centred = (inside - inside.mean()) / (inside.std() + 1e-6)
    return np.array(
        [
            float((image.max(axis=-1) - image.min(axis=-1))[head].mean()) / level if head.any() else 0.0,
            level,
            float(inside.std()) / level,
            float(np.abs(ndimage.laplace(gray))[head].mean()) / level if head.any() else 0.0,
            float(background.std()) / level if background.size else 0.0,
            float(np.mean(centred**3)),
            float(np.mean(centred**4)),
            float(np.mean(inside > 1.5 * median)),
            float(np.percentile(inside, 99)) / median,
        ]
    )


def views(
    images: np.ndarray, preprocessing: str, seed: int, targets: np.ndarray, sequence: float = 0.0, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Cue values (N, len(ALL_CUES)) of the decoded images, the network's input, that input after augmentation
    and (``sequence`` > 0) after the sequence remaps too, drawn as a training epoch would."""
    import tensorflow as tf

    from tumor_ai.core.preprocessing import NORMALIZERS

    from .pipeline import augmentation
    from .sequence import SequenceRemap

    normalizer = NORMALIZERS[preprocessing]
    augmenter = augmentation(seed, acquisition=True)
    remap = SequenceRemap(images, targets, sequence, seed) if sequence else None
    names = ["decoded", "network input", "augmented input"] + ([f"+ sequence remaps ({sequence:.0%})"] if remap else [])
    out: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        fed = np.asarray(normalizer(batch))
        augmented = np.asarray(normalizer(tf.clip_by_value(augmenter(tf.constant(batch), training=True), 0.0, 255.0)))
        arrays = [batch, fed, augmented]
        if remap:
            indices = np.arange(start, start + len(batch))
            remapped = images[indices].copy()
            remap.apply(remapped, targets[indices].copy(), indices, epoch=0)
            moved = augmenter(tf.constant(remapped.astype(np.float32)), training=True)
            arrays.append(np.asarray(normalizer(tf.clip_by_value(moved, 0.0, 255.0))))
        for name, array in zip(names, arrays):
            out[name].extend(cue_values(image) for image in array)
    return {name: np.stack(values) for name, values in out.items()}


def decoded_and_fed(images: np.ndarray, preprocessing: str) -> dict[str, np.ndarray]:
    """Cue values of images as decoded and as the network is fed (no augmentation: what serving sees)."""
    from tumor_ai.core.preprocessing import NORMALIZERS

    fed = np.asarray(NORMALIZERS[preprocessing](images.astype(np.float32)))
    return {
        "decoded": np.stack([cue_values(image) for image in images.astype(np.float32)]),
        "network input": np.stack([cue_values(image) for image in fed]),
    }


def cue_auc(
    values: np.ndarray,
    is_notumor: np.ndarray,
    train_idx: np.ndarray,
    validation_idx: np.ndarray,
    other: tuple[np.ndarray, np.ndarray] | None = None,
) -> float | tuple[float, float]:
    """Validation ROC AUC of a logistic regression on these cue columns, fitted on the training images.

    With ``other`` (cue values of tumour slices from another collection, and the indices of the
    validation no-tumour slices), also the AUC of the same fit on those tumours against those no-tumour slices.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(values[train_idx], is_notumor[train_idx])
    within = float(roc_auc_score(is_notumor[validation_idx], classifier.predict_proba(values[validation_idx])[:, 1]))
    if other is None:
        return within
    tumours, notumor_idx = other
    scores = np.concatenate([classifier.predict_proba(values[notumor_idx])[:, 1], classifier.predict_proba(tumours)[:, 1]])
    truth = np.concatenate([np.ones(len(notumor_idx)), np.zeros(len(tumours))])
    return within, float(roc_auc_score(truth, scores))


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.cues", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset root with one sub-folder per class")
    parser.add_argument("--preprocessing", default="luminance", help="the network's normalisation (default luminance)")
    parser.add_argument("--input-size", type=int, default=256, help="side of the decoded images (default 256, the CNN's)")
    parser.add_argument("--crop", default="head", help="crop before the resize (default head, the CNN's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the augmentation draw (default 0)")
    parser.add_argument("--cache-dir", default=".cache", help="where the decoded images are cached")
    parser.add_argument("--other", help="a folder with tumour/ slices of another collection (and groups.csv), e.g. Br35H")
    parser.add_argument("--sequence", type=float, default=0.3, help="share remapped in the sequence view (default 0.3; 0: off)")
    parser.add_argument("--out", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    size = (args.input_size, args.input_size)
    dataset = load_folder(args.data, sizes=[size], cache_dir=f"{args.cache_dir}/data", crop=args.crop)
    train_idx, validation_idx, _ = split_dataset(dataset, 0.2, args.seed)
    is_notumor = (dataset.targets == dataset.labels.index("notumor")).astype(int)
    measured = views(dataset.images[size], args.preprocessing, args.seed, dataset.targets, args.sequence)
    other = other_cues(args, size) if args.other else {}
    notumor_idx = validation_idx[is_notumor[validation_idx] == 1]
    table: dict[str, dict] = {}
    for view, values in measured.items():
        table[view] = {}
        for k, cue in [*enumerate(ALL_CUES), (None, "all together")]:
            columns = list(range(len(ALL_CUES))) if k is None else [k]
            if view in other:
                within, across = cue_auc(
                    values[:, columns], is_notumor, train_idx, validation_idx, (other[view][:, columns], notumor_idx)
                )
                table[view][cue] = {"within": round(within, 3), "across": round(across, 3)}
            else:
                table[view][cue] = {"within": round(cue_auc(values[:, columns], is_notumor, train_idx, validation_idx), 3)}
    print(
        f"no tumour vs tumour from one cue, ROC AUC (0.5 = the cue says nothing): within = the Kaggle validation split "
        f"({len(validation_idx)} images); across = {len(next(iter(other.values()))) if other else 0} other-collection "
        f"tumour slices vs its {len(notumor_idx)} no-tumour slices"
    )
    print(markdown(table))
    if args.out:
        with open(args.out, "w") as stream:
            json.dump(
                {
                    "preprocessing": args.preprocessing,
                    "input_size": args.input_size,
                    "validation_images": int(len(validation_idx)),
                    "other": args.other and Path(args.other).name,
                    "other_slices": int(len(next(iter(other.values())))) if other else 0,
                    "sequence": args.sequence,
                    "auc": table,
                },
                stream,
                indent=2,
            )


def other_cues(args: argparse.Namespace, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Cue values of the other collection's tumour slices, one file per distinct slice, as decoded and as fed."""
    from .partial import load_partial

    partial = load_partial(args.other, size, args.crop, 0.0, args.seed, args.cache_dir)
    return decoded_and_fed(partial.images[partial.slices.representative], args.preprocessing)


def markdown(table: dict[str, dict]) -> str:
    """The AUC table as Markdown: one row per cue, a column per view (within / across where measured)."""
    views_ = list(table)
    lines = ["| cue | " + " | ".join(views_) + " |", "|---" * (len(views_) + 1) + "|"]
    for cue in [*ALL_CUES, "all together"]:
        cells = []
        for view in views_:
            found = table[view][cue]
            cells.append(f"{found['within']:.3f} / {found['across']:.3f}" if "across" in found else f"{found['within']:.3f}")
        lines.append(f"| {cue} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
