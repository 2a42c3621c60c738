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
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import ndimage

from .data import load_folder
from .split import split_dataset

CUES = ("colour", "level", "contrast", "sharpness", "background noise")


def cue_values(image: np.ndarray) -> np.ndarray:
    """The cues of one (H, W, C) float image: none of them looks at where or what a lesion is."""
    gray = image.mean(axis=-1)
    head = ndimage.binary_fill_holes(gray > 0.1 * max(float(gray.max()), 1e-6))
    inside = gray[head] if head.any() else gray.ravel()
    level = float(inside.mean()) + 1e-6
    background = gray[~ndimage.binary_dilation(head, iterations=4)]
    return np.array(
        [
            float((image.max(axis=-1) - image.min(axis=-1))[head].mean()) / level if head.any() else 0.0,
            level,
            float(inside.std()) / level,
            float(np.abs(ndimage.laplace(gray))[head].mean()) / level if head.any() else 0.0,
            float(background.std()) / level if background.size else 0.0,
        ]
    )


def views(images: np.ndarray, preprocessing: str, seed: int, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Cue values (N, len(CUES)) of the decoded images, the network's input, and that input after augmentation."""
    import tensorflow as tf

    from tumor_ai.core.preprocessing import NORMALIZERS

    from .pipeline import augmentation

    normalizer = NORMALIZERS[preprocessing]
    augmenter = augmentation(seed, acquisition=True)
    out: dict[str, list] = {"decoded": [], "network input": [], "augmented input": []}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        fed = np.asarray(normalizer(batch))
        augmented = np.asarray(normalizer(tf.clip_by_value(augmenter(tf.constant(batch), training=True), 0.0, 255.0)))
        for name, array in (("decoded", batch), ("network input", fed), ("augmented input", augmented)):
            out[name].extend(cue_values(image) for image in array)
    return {name: np.stack(values) for name, values in out.items()}


def cue_auc(values: np.ndarray, is_notumor: np.ndarray, train_idx: np.ndarray, validation_idx: np.ndarray) -> float:
    """Validation ROC AUC of a logistic regression on these cue columns, fitted on the training images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(values[train_idx], is_notumor[train_idx])
    return float(roc_auc_score(is_notumor[validation_idx], classifier.predict_proba(values[validation_idx])[:, 1]))


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
    parser.add_argument("--out", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    size = (args.input_size, args.input_size)
    dataset = load_folder(args.data, sizes=[size], cache_dir=f"{args.cache_dir}/data", crop=args.crop)
    train_idx, validation_idx, _ = split_dataset(dataset, 0.2, args.seed)
    is_notumor = (dataset.targets == dataset.labels.index("notumor")).astype(int)
    measured = views(dataset.images[size], args.preprocessing, args.seed)
    table = {
        view: {
            **{cue: round(cue_auc(values[:, [k]], is_notumor, train_idx, validation_idx), 3) for k, cue in enumerate(CUES)},
            "all together": round(cue_auc(values, is_notumor, train_idx, validation_idx), 3),
        }
        for view, values in measured.items()
    }
    print(f"no tumour vs tumour from one cue, validation ROC AUC ({len(validation_idx)} images; 0.5 = the cue says nothing)")
    print(f"{'cue':<18}" + "".join(f"{view:>18}" for view in table))
    for cue in [*CUES, "all together"]:
        print(f"{cue:<18}" + "".join(f"{table[view][cue]:>18.3f}" for view in table))
    if args.out:
        with open(args.out, "w") as stream:
            json.dump(
                {"preprocessing": args.preprocessing, "validation_images": int(len(validation_idx)), "auc": table},
                stream,
                indent=2,
            )


if __name__ == "__main__":
    main()
