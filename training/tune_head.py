"""The VGG16 head study on cached features: ``tumor-ai tune --model vgg16-head --start-from models/vgg16``.

A head-alone run (``training.train --model vgg16 --start-from FOLDER --epochs 0``) keeps blocks 1-5
of the source frozen, so everything its head can see is a cached ``block5_pool`` map: the training
and validation images' (``training.vgg16.pooled_features``), the partial folder's, and the
validation outlines' copies with the tumour or a same-size control region hidden, by the training
fill and by the fills no recipe trains on (``training.localise.HELD_OUT_FILLS``). That is what makes
the cached features valid here, and a trial cost seconds instead of a training run: each trial runs
the trainer's own ``train_head`` with its recipe, then reads every figure from the cached maps.

What a trial cannot measure: the map. The served Layer-CAM is read at block 4, whose gradient flows
back through the head, so the pointing game is the source's (from its metadata) in every trial, and
``tumor-ai localise`` measures it again on the head that is shipped. Figures read from cached maps
differ from the served model's by the float16 storage of block 3 only; the shipped head's own
figures come from ``training.train``'s validation at float32.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .tune import TrialScore

REASON_KINDS = ("erased", "control")
HEAD_NOTE = (
    "A head study: blocks 1-5 of the source stay frozen, so each trial's figures are read from cached block5_pool maps "
    "(training.tune_head). The map's peak column is the source's pointing game in every trial (the map is read at "
    "block 4); tumor-ai localise measures it again on the head that is shipped."
)


@dataclass
class HeadStudyData:
    """Everything a head trial reads, computed once per study (and cached on disk where it is costly)."""

    prepared: object  # training.vgg16.Prepared
    labels: list[str]
    validation_idx: np.ndarray
    partial_rows: np.ndarray  # rows of the held-out partial slices (one per slice group) in the pooled features
    pooled: np.ndarray  # block5_pool maps of every row (dataset, then partial)
    reasons: dict[str, np.ndarray]  # "erased@smooth" ... -> block5_pool maps of the validation outlines' copies
    reason_labels: np.ndarray
    has_control: np.ndarray
    pointing_game: float


def reason_images(samples, input_size: tuple[int, int], crop: str, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Each outlined validation slice with its tumour, and a same-size region elsewhere, hidden by every fill.

    The same erasures as ``tumor-ai localise``: the training fill is the app's push-pull fill
    (``tumor_ai.core.erase.fill_region``) on the outline; the held-out fills on the outline and on
    the control region. A slice without room for a control region repeats its erased image there
    and is left out of the control figures.
    """
    from tumor_ai.core.erase import fill_region
    from tumor_ai.core.preprocessing import model_input

    from .localisation import control_region, head_mask
    from .localise import HELD_OUT_FILLS, held_out_fill

    rng = np.random.default_rng(seed)
    fills = {"smooth": lambda image, region: fill_region(image, region)}
    fills.update({style: (lambda image, region, style=style: held_out_fill(image, region, style)) for style in HELD_OUT_FILLS})
    images: dict[str, list[np.ndarray]] = {f"{kind}@{style}": [] for kind in REASON_KINDS for style in fills}
    has_control = []
    for sample in samples:
        control = control_region(sample.mask, head_mask(sample.image), rng)
        has_control.append(control is not None)
        for style, hide in fills.items():
            erased = model_input(hide(sample.image, sample.mask), input_size, crop)[0]
            images[f"erased@{style}"].append(erased)
            images[f"control@{style}"].append(
                erased if control is None else model_input(hide(sample.image, control), input_size, crop)[0]
            )
    return {key: np.stack(value) for key, value in images.items()}, np.array(has_control)


def block5_maps(model, preprocessing: str, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """The frozen network's ``block5_pool`` output (the head's input) for ``uint8`` images, float16."""
    import keras

    from tumor_ai.core.preprocessing import normalize

    extractor = keras.Model(model.input, model.get_layer("block5_pool").output)
    parts = [extractor(normalize(images[start : start + batch].astype(np.float32), preprocessing), training=False).numpy()
             for start in range(0, len(images), batch)]  # fmt: skip
    return np.concatenate(parts).astype(np.float16)


def reasons_set(args: argparse.Namespace, prepared, labels: list[str]) -> tuple[dict, np.ndarray, np.ndarray]:
    """The validation outlines' hidden-region copies as ``block5_pool`` maps, cached by source model and count."""
    from .localise import load_samples

    source = Path(args.start_from)
    digest = hashlib.sha256((source / "model.keras").read_bytes()).hexdigest()[:12]
    path = Path(args.cache_dir) / "tune" / "vgg16-head" / f"reasons_{digest}_{args.limit}.npz"
    if path.exists():
        with np.load(path) as found:
            return {k: found[k] for k in found.files if "@" in k}, found["labels"], found["has_control"]
    metadata = prepared.metadata
    samples = load_samples(args.data, args.masks, str(source), labels, "validation", args.limit)
    images, has_control = reason_images(samples, tuple(metadata.input_size), metadata.crop)
    maps = {key: block5_maps(prepared.model, metadata.preprocessing, value) for key, value in images.items()}
    targets = np.array([labels.index(sample.label) for sample in samples])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, labels=targets, has_control=has_control, **maps)
    return maps, targets, has_control


class HeadTrials:
    """``tumor-ai tune``'s trainer for ``--model vgg16-head``: the trainer's ``train_head`` on cached maps, in-process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data: HeadStudyData | None = None
        self.head_start: list | None = None
        self.source_score: TrialScore | None = None

    def load(self, recipe, run) -> HeadStudyData:
        """Read the dataset, split it as the trainer does, and compute or read every cached map (once per study)."""
        from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata

        from .data import load_folder
        from .partial import load_partial
        from .split import split_dataset
        from .vgg16 import chained_model, pooled_features, prepare

        dataset = load_folder(run.data, sizes=[recipe.size], cache_dir=Path(run.cache_dir) / "data", crop=recipe.crop)
        train_idx, validation_idx, _ = split_dataset(dataset, recipe.validation_fraction, recipe.seed)
        prepared = prepare(recipe, run, dataset, train_idx)
        frozen = chained_model(prepared.model, "block3_pool", up_to_layer="block5_pool")
        pooled = pooled_features(frozen, prepared.variants[0], run.cache_dir)
        partial = load_partial(recipe.partial, recipe.size, recipe.crop, recipe.validation_fraction, recipe.seed, run.cache_dir)
        reasons, reason_labels, has_control = reasons_set(self.args, prepared, dataset.labels)
        source = ModelMetadata.read(Path(recipe.start_from) / METADATA_FILE)
        pointing = source.localisation.pointing_game.value if source.localisation else 0.0
        return HeadStudyData(
            prepared, dataset.labels, validation_idx, len(dataset.paths) + partial.validation_representatives, pooled,
            reasons, reason_labels, has_control, float(pointing),
        )  # fmt: skip

    def train(self, folder: Path, flags: list[str], on_epoch) -> None:
        """Train the trial's head from the source's head weights and write its score into ``folder``."""
        import time

        from .train import parse_args
        from .vgg16 import chained_model, train_head

        recipe, run = parse_args([*flags, "--model", "vgg16", "--data", self.args.data, "--partial", self.args.partial,
                                  "--out", str(folder), "--cache-dir", self.args.cache_dir])  # fmt: skip
        if self.data is None:
            self.data = self.load(recipe, run)
            start = chained_model(self.data.prepared.model, "block5_pool")
            self.head_start = start.get_weights()
            self.source_score = self.measure(start, 0.0)  # the source's own head on the same maps: the study's baseline
        data = self.data
        head = chained_model(data.prepared.model, "block5_pool")
        head.set_weights(self.head_start)
        started = time.perf_counter()
        prepared = data.prepared
        train_head(recipe, prepared.model, prepared.variants, prepared.train_idx, data.validation_idx, prepared.targets,
                   prepared.weights_by_class, data.labels, run.cache_dir)  # fmt: skip
        score = self.measure(head, time.perf_counter() - started)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "score.json").write_text(json.dumps(asdict(score), indent=1))

    def measure(self, head, seconds: float) -> TrialScore:
        """Every figure of a trained head from the cached maps (the pointing game is the source's)."""
        from .metrics import classification_report
        from .partial import sensitivity

        data = self.data

        def answers(maps: np.ndarray) -> np.ndarray:
            return head.predict(maps.astype(np.float32), batch_size=256, verbose=0)

        targets = data.prepared.targets[data.validation_idx]
        report = classification_report(answers(data.pooled[data.validation_idx]), targets, data.labels)
        other = sensitivity(answers(data.pooled[data.partial_rows]), data.labels)["sensitivity"]
        kept = {key: answers(maps).argmax(axis=1) == data.reason_labels for key, maps in data.reasons.items()}
        control = data.has_control

        def share(key: str) -> float:
            values = kept[key][control] if key.startswith("control") else kept[key]
            return round(float(values.mean()), 4) if len(values) else 0.0

        held = sorted({key.split("@")[1] for key in kept} - {"smooth"})
        return TrialScore(
            macro_f1=report["macro_f1"],
            accuracy=report["accuracy"],
            pointing_game=data.pointing_game,
            tumour_kept=share("erased@smooth"),
            control_kept=share("control@smooth"),
            held_out_tumour_kept={style: share(f"erased@{style}") for style in held},
            held_out_control_kept={style: share(f"control@{style}") for style in held},
            other_collection=other,
            train_seconds=round(seconds, 1),
        )

    def score(self, folder: Path) -> TrialScore:
        return TrialScore(**json.loads((folder / "score.json").read_text()))
