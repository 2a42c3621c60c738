"""Where a model looks, measured on held-out slices with tumour masks, and whether it needs the tumour.

    tumor-ai localise --model models/cnn/split-run --data ../shared/data/brain-tumor-mri/Training \\
        --masks ../shared/data/brain-tumor-mri/masks/Training --out .cache/localise/cnn.json --write

For every image of the model's validation split that has a mask (``--subset validation``), with
the map of the *true* class placed over the whole image as the app draws it:

- for each CAM method (``tumor_ai.core.cam``) at the metadata's layer and at finer layers: the pointing
  game, the relevance mass against the tumour's share of the image, the map's mass in the border of
  the model's input, deletion and insertion AUC (on ``--deletion-images`` of them) and the serving
  cost of that map;
- the tumour-erased test: the tumour filled from its surroundings (``tumor_ai.core.erase``, the fill the
  app's "hide a region" uses) and the share of images that still get their tumour class, beside a
  same-size region filled elsewhere in the head (the control: does any erasure change the answer?);
  both again with fills no training recipe uses (``HELD_OUT_FILLS``: the nearest visible pixel's grey,
  and the surroundings blurred in), so that a model that learned the training fills is caught.

Every figure comes with a 95% bootstrap interval over whole figshare slices. ``--write`` stores the
figures in the model's metadata (and card), and names the variant that localises best within the
serving-cost envelope as the one the app serves (``cam_method``, ``cam_layer``); ``--carry-to``
copies them to the refit trained from this split run. The measures are in ``training.localisation``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tumor_ai.core.cam import CAM_METHODS, cam_function, method_name, place_in_frame, upsample
from tumor_ai.core.erase import fill_region
from tumor_ai.core.preprocessing import channels

from .data import list_images
from .evaluate import select_subset
from .localisation import (
    area_under,
    border_mass,
    control_region,
    deletion_insertion_inputs,
    group_bootstrap,
    head_mask,
    pointing_hit,
    relevance_mass,
)

# One configurable block: the defaults every published figure used.
DELETION_IMAGES = 96  # images (stratified by class) that get the deletion and insertion curves: 33 passes each per map
BOOTSTRAP_DRAWS = 1000
COST_ENVELOPE = 1.5  # a map may cost at most this multiple of the served one's forward-and-CAM pass
FINER_LAYERS = 1  # stage outputs finer than the metadata's layer to try
SEED = 0
HELD_OUT_FILLS = ("nearest", "blur")  # no recipe trains on these (training.counterfactuals.FILLS)
HELD_OUT_GROW = 2  # px the outline grows before "nearest" copies its edge, so the tumour's rim is not what it copies


def held_out_fill(pixels: np.ndarray, region: np.ndarray, style: str) -> np.ndarray:
    """``region`` hidden by a fill the models never trained on, made only of the pixels around it.

    "nearest": each hidden pixel takes the grey of the nearest visible pixel (a Voronoi fill, flat
    facets where the training fills are smooth or textured), with the outline grown by
    ``HELD_OUT_GROW`` px first; "blur": the surroundings blurred as wide as the region by normalised
    convolution, so the region's own pixels never enter. An erasure must not let the tumour
    through: a plain blur of the box kept a bright tumour as a bright blob, and scikit-image's
    biharmonic inpainting overshot at the skull's edge (the filled mean up to twice its
    surroundings'), so "kept" partly measured a tumour still there; both were replaced.

    Both work on the region's box with a margin, so the cost follows the region, not the slice.
    """
    from scipy import ndimage

    if style not in HELD_OUT_FILLS:
        raise ValueError(f"unknown held-out fill {style!r}: one of {', '.join(HELD_OUT_FILLS)}")
    region = np.asarray(region).astype(np.uint8, copy=False) > 0  # canonical bools (a PIL "1" mask holds 255s)
    if not region.any():
        return pixels
    if style == "nearest":
        region = ndimage.binary_dilation(region, iterations=HELD_OUT_GROW)
    rows, cols = np.nonzero(region)
    margin = 12
    top, left = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    bottom, right = min(rows.max() + margin + 1, region.shape[0]), min(cols.max() + margin + 1, region.shape[1])
    box = pixels[top:bottom, left:right].astype(np.float64)
    inside = region[top:bottom, left:right].copy()
    gray = box.mean(axis=-1) if box.ndim == 3 else box
    if inside.all():
        filled = np.full_like(gray, gray.mean())  # nothing visible around it: the box's mean
    elif style == "nearest":
        _, (near_rows, near_cols) = ndimage.distance_transform_edt(inside, return_indices=True)
        filled = gray[near_rows, near_cols]
    else:
        sigma = max(2.0, 0.25 * max(bottom - top, right - left))
        visible = ndimage.gaussian_filter((~inside).astype(np.float64), sigma, mode="reflect")
        filled = ndimage.gaussian_filter(np.where(inside, 0.0, gray), sigma, mode="reflect") / np.maximum(visible, 1e-6)
    out = pixels.copy()
    value = np.clip(np.rint(filled), 0, 255).astype(pixels.dtype)
    window = out[top:bottom, left:right]
    if window.ndim == 3:
        window[inside] = value[inside][:, None]
    else:
        window[inside] = value[inside]
    return out


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.localise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder (a split run, whose validation images are held out)")
    parser.add_argument("--data", required=True, help="folder with one sub-folder of images per class")
    parser.add_argument("--masks", required=True, help="folder of <class>/<image stem>.png tumour masks (optional masks.csv)")
    parser.add_argument(
        "--subset", choices=["validation", "all"], default="validation", help="images to score (default: validation)"
    )
    parser.add_argument("--out", help="report JSON (every image's record and every figure)")
    parser.add_argument(
        "--methods", nargs="+", default=list(CAM_METHODS), choices=list(CAM_METHODS), help="CAM methods to compare"
    )
    parser.add_argument("--layers", nargs="+", help="layers to compare (default: the metadata's and the next finer stage output)")
    parser.add_argument("--deletion-images", type=int, default=DELETION_IMAGES, help="images with deletion/insertion curves")
    parser.add_argument("--limit", type=int, help="score only this many images (stratified by class): a quick look")
    parser.add_argument("--score-cam-images", type=int, default=0, help="also time Score-CAM on this many images (costly)")
    parser.add_argument(
        "--write", action="store_true", help="store the figures and the chosen map in the model's metadata and card"
    )
    parser.add_argument("--carry-to", nargs="*", default=[], help="refit folders that serve this split run's choice and figures")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--report", help="a report this command wrote: choose and --write from it instead of measuring again")
    return parser.parse_args(argv)


@dataclass
class Sample:
    """One held-out image with its tumour mask; ``group`` is its figshare slice, shared by its copies."""

    path: str
    label: str
    image: np.ndarray
    mask: np.ndarray
    group: str


def load_samples(data: str, masks: str, model: str, labels: list[str], subset: str, limit: int | None) -> list[Sample]:
    """The images of the chosen subset that have a mask, read as the app reads them."""
    from tumor_ai.core.imaging import read_image

    masks_root = Path(masks)
    groups = {}
    table = masks_root / "masks.csv"
    if table.exists():
        with table.open() as stream:
            groups = {row["kaggle_path"]: f"figshare:{row['figshare_id']}" for row in csv.DictReader(stream)}
    items = select_subset(list_images(data, [label for label in labels if (Path(data) / label).is_dir()]), model, subset)
    items = [(path, label) for path, label in items if (masks_root / Path(path).with_suffix(".png")).exists()]
    if limit:
        items = stratified(items, limit)
    samples = []
    for path, label in tqdm(items, desc="reading images and masks", unit="img"):
        image = read_image(Path(data) / path, name=path).pixels
        mask = np.asarray(Image.open(masks_root / Path(path).with_suffix(".png"))).astype(bool)
        if mask.shape != image.shape[:2] or not mask.any():
            print(f"skipped {path}: its mask does not match the image", file=sys.stderr)
            continue
        samples.append(Sample(path, label, image, mask, groups.get(path, path)))
    return samples


def stratified(items: list, count: int, seed: int = SEED) -> list:
    """``count`` items, the same share of each class, in a seeded order."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list] = {}
    for item in items:
        by_label.setdefault(item[1], []).append(item)
    share = count / max(len(items), 1)
    chosen = []
    for group in by_label.values():
        picks = rng.permutation(len(group))[: max(1, round(share * len(group)))]
        chosen += [group[i] for i in sorted(picks)]
    return chosen


def stage_outputs(model) -> list[str]:
    """The last layer at each spatial size (coarsest first): where each stage of a CNN ends."""
    import keras

    last: dict[tuple, str] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = getattr(layer, "output", None) is not None and layer.output.shape
        if shape and len(shape) == 4 and shape[1] and shape[1] > 1:
            last[tuple(shape[1:3])] = layer.name
    return [last[size] for size in sorted(last, key=lambda size: size[0] * size[1])]


def candidate_layers(model, served: str, finer: int = FINER_LAYERS) -> list[str]:
    """The served layer and the next ``finer`` stage outputs below it."""
    stages = stage_outputs(model)
    if served not in stages:
        return [served, *stages[:finer]]
    start = stages.index(served)
    return stages[start : start + 1 + finer]


class MapReader:
    """Features and class-logit gradients at several layers in one pass, and probabilities without a backward pass."""

    def __init__(self, predictor, layers: list[str]) -> None:
        import keras
        import tensorflow as tf

        model, metadata = predictor.model, predictor.metadata
        self.predictor, self.layers = predictor, layers
        head = model.get_layer(metadata.logits_layer)
        self._graph = keras.Model(model.input, [model.get_layer(name).output for name in layers] + [head.input])
        self._kernel, self._bias = head.kernel, head.bias
        spec = tf.TensorSpec([None, *metadata.input_size, channels(metadata.preprocessing)], tf.float32)
        self._maps = tf.function(self._maps_fn, input_signature=[spec, tf.TensorSpec([None], tf.int32)])
        self._logits = tf.function(self._logits_fn, input_signature=[spec])

    def _maps_fn(self, batch, classes):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            *features, penultimate = self._graph(batch, training=False)
            for tensor in features:
                tape.watch(tensor)
            logits = tf.matmul(tf.cast(penultimate, self._kernel.dtype), self._kernel) + self._bias
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        gradients = tape.gradient(score, features)
        return [tf.cast(f, tf.float32) for f in features], [tf.cast(g, tf.float32) for g in gradients]

    def _logits_fn(self, batch):
        import tensorflow as tf

        penultimate = self._graph(batch, training=False)[-1]
        return tf.matmul(tf.cast(penultimate, self._kernel.dtype), self._kernel) + self._bias

    def features(self, batch: np.ndarray, classes: np.ndarray) -> tuple[list, list]:
        """Each layer's activations and the gradients of the given classes' logits with respect to them."""
        return self._maps(batch, classes.astype(np.int32))

    def maps(self, batch: np.ndarray, classes: np.ndarray, methods: list[str]) -> dict[tuple[str, str], np.ndarray]:
        """(method, layer) -> maps (batch, h, w) on the model input's grid, for the given classes."""
        features, gradients = self.features(batch, classes)
        return {
            (method, layer): np.asarray(cam_function(method)(f, g))
            for layer, f, g in zip(self.layers, features, gradients)
            for method in methods
        }

    def probabilities(self, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Calibrated probabilities for model-input ``uint8`` images, with the served test-time flip."""
        from tumor_ai.core.calibration import softmax
        from tumor_ai.core.preprocessing import normalize

        metadata = self.predictor.metadata
        out = []
        for start in range(0, len(pixels), batch_size):
            batch = normalize(pixels[start : start + batch_size], metadata.preprocessing)
            logits = self._logits(batch).numpy()
            if metadata.test_time_flip:
                logits = (logits + self._logits(batch[:, :, ::-1]).numpy()) / 2
            out.append(softmax(logits, self.predictor.temperature))
        return np.concatenate(out)


def serving_cost_ms(predictor, layer: str, method: str, repeats: int = 7) -> float:
    """Median milliseconds of the served forward-and-CAM pass for one slice with this map (the app's path)."""
    from tumor_ai.core.inference import Predictor

    variant = Predictor(
        predictor.model, replace(predictor.metadata, cam_layer=layer, cam_method=method), precision=predictor.precision
    )
    height, width = predictor.metadata.input_size
    batch = predictor.prepare([np.random.default_rng(SEED).integers(0, 256, (height, width, 3), dtype=np.uint8)])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        variant.run(batch)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def score_cam(reader: MapReader, pixels: np.ndarray, features: np.ndarray, target: int, chunk: int = 64) -> np.ndarray:
    """Score-CAM (Wang et al., 2020): each channel's upsampled map masks the input; its weight is the class probability."""
    height, width = pixels.shape[:2]
    channels = features.shape[-1]
    weights = np.zeros(channels, np.float32)
    for start in range(0, channels, chunk):
        masks = []
        for channel in range(start, min(start + chunk, channels)):
            upsampled = upsample(np.clip(features[..., channel] / (features[..., channel].max() + 1e-8), 0, 1), (height, width))
            masks.append((pixels * upsampled[..., None]).astype(np.uint8))
        weights[start : start + len(masks)] = reader.probabilities(np.stack(masks))[:, target]
    cam = np.maximum((features * weights).sum(axis=-1), 0)
    return cam / (cam.max() + 1e-8)


def measure(args: argparse.Namespace) -> dict:
    """Run every measurement; the report as a dict (see the module docstring)."""
    from tumor_ai.core.inference import Predictor

    predictor = Predictor.from_source(args.model, warm_up=False, precision="float32")  # the published figures are float32
    metadata = predictor.metadata
    if metadata.training.refit and args.subset == "validation":
        raise SystemExit(
            f"error: {args.model} is a refit on every image, so its validation images are not held out; "
            f"measure the split run (--model {metadata.training.refit.of}) and --carry-to this folder"
        )
    samples = load_samples(args.data, args.masks, args.model, predictor.labels, args.subset, args.limit)
    if not samples:
        raise SystemExit(f"error: no images with masks under {args.data} and {args.masks} for subset '{args.subset}'")
    layers = args.layers or candidate_layers(predictor.model, metadata.cam_layer)
    report = localise(predictor, samples, args.methods, layers, args.deletion_images, args.batch_size)
    report.update({"model": str(args.model), "data": str(args.data), "masks": str(args.masks), "subset": args.subset})
    if args.score_cam_images:
        report["score_cam"] = time_score_cam(predictor, samples, args.score_cam_images)
    return report


def localise(
    predictor,
    samples: list[Sample],
    methods: list[str],
    layers: list[str],
    deletion_images: int = DELETION_IMAGES,
    batch_size: int = 16,
) -> dict:
    """Every map's figures, the tumour-erased test, each map's serving cost and the map to serve, for ``samples``."""
    from tumor_ai.core.preprocessing import model_input, normalize

    metadata = predictor.metadata
    reader = MapReader(predictor, layers)
    variants = [(method, layer) for layer in layers for method in methods]
    curve_paths = (
        {item[0] for item in stratified([(s.path, s.label) for s in samples], deletion_images)} if deletion_images else set()
    )
    rng = np.random.default_rng(SEED)
    records = []
    for start in tqdm(range(0, len(samples), batch_size), desc=f"localising {predictor.name}", unit="batch"):
        chunk = samples[start : start + batch_size]
        prepared = [model_input(s.image, tuple(metadata.input_size), metadata.crop) for s in chunk]
        inputs = np.stack([pixels for pixels, _ in prepared])
        targets = np.array([predictor.labels.index(s.label) for s in chunk])
        maps = reader.maps(normalize(inputs, metadata.preprocessing), targets, methods)
        erased = [fill_region(s.image, s.mask) for s in chunk]
        controls = [control_region(s.mask, head_mask(s.image), rng) for s in chunk]
        before = reader.probabilities(inputs)
        after = reader.probabilities(np.stack([model_input(e, tuple(metadata.input_size), metadata.crop)[0] for e in erased]))
        for index, sample in enumerate(chunk):
            target = int(targets[index])
            record = {
                "path": sample.path,
                "label": sample.label,
                "group": sample.group,
                "mask_share": round(float(sample.mask.mean()), 5),
                "predicted": predictor.labels[int(np.argmax(before[index]))],
                "erased_predicted": predictor.labels[int(np.argmax(after[index]))],
                "erased_drop": round(float(before[index, target] - after[index, target]), 5),
                "maps": {},
            }
            if controls[index] is not None:
                control = model_input(fill_region(sample.image, controls[index]), tuple(metadata.input_size), metadata.crop)[0]
                record["control_predicted"] = predictor.labels[int(np.argmax(reader.probabilities(control[None])[0]))]
            record["held_out"] = held_out_answers(predictor, reader, sample, controls[index])
            curved = sample.path in curve_paths
            curves_of: dict[bytes, tuple[float, float]] = {}  # identical maps (Grad-CAM and HiResCAM after pooling) share curves
            for method, layer in variants:
                record["maps"][f"{method}@{layer}"] = map_entry(
                    maps[(method, layer)][index], sample, prepared[index][1], (inputs[index], target), reader, curves_of, curved
                )
            records.append(record)
    report = summarise(records, variants, predictor)
    report["costs_ms"] = {f"{method}@{layer}": round(serving_cost_ms(predictor, layer, method), 1) for method, layer in variants}
    report["chosen"] = choose(report, f"{metadata.cam_method}@{metadata.cam_layer}")
    return report


def held_out_answers(predictor, reader: MapReader, sample: Sample, control: np.ndarray | None) -> dict:
    """The class read with the tumour, and with the control region, hidden by each held-out fill."""
    from tumor_ai.core.preprocessing import model_input

    metadata = predictor.metadata
    regions = {"erased": sample.mask, **({"control": control} if control is not None else {})}
    keys = [(kind, style) for kind in regions for style in HELD_OUT_FILLS]
    pixels = np.stack([
        model_input(held_out_fill(sample.image, regions[kind], style), tuple(metadata.input_size), metadata.crop)[0]
        for kind, style in keys
    ])  # fmt: skip
    answers = np.argmax(reader.probabilities(pixels), axis=-1)
    found: dict = {}
    for (kind, style), answer in zip(keys, answers):
        found.setdefault(style, {})[f"{kind}_predicted"] = predictor.labels[int(answer)]
    return found


def map_entry(
    cam: np.ndarray,
    sample: Sample,
    frame: tuple,
    model_input_and_class: tuple[np.ndarray, int],
    reader: MapReader,
    curves_of: dict,
    curved: bool,
) -> dict:
    """One map of one image: the pointing game and relevance mass as the app shows it, its border share, and
    (for ``curved`` images) the deletion and insertion AUC on the model's own input."""
    shown = upsample(place_in_frame(cam, frame, sample.image.shape[:2]), sample.mask.shape)
    entry = {
        "hit": pointing_hit(shown, sample.mask),
        "mass": round(relevance_mass(shown, sample.mask), 5),
        "border": round(border_mass(cam), 5),
    }
    if curved:
        pixels, target = model_input_and_class
        key = np.round(cam, 4).tobytes()
        if key not in curves_of:
            deleted, inserted = deletion_insertion_inputs(pixels, cam)
            curves = reader.probabilities(np.concatenate([deleted, inserted]))[:, target]
            curves_of[key] = (area_under(curves[: len(deleted)]), area_under(curves[len(deleted) :]))
        entry["deletion"], entry["insertion"] = (round(value, 5) for value in curves_of[key])
    return entry


def time_score_cam(predictor, samples: list[Sample], count: int) -> dict:
    """Score-CAM's pointing game and cost on a few images, at the served layer: why it is not served."""
    from tumor_ai.core.preprocessing import model_input, normalize

    metadata = predictor.metadata
    layer = metadata.cam_layer
    single = MapReader(predictor, [layer])
    hits, seconds = [], []
    for sample in stratified([(s, s.label) for s in samples], count):
        sample = sample[0]
        pixels, frame = model_input(sample.image, tuple(metadata.input_size), metadata.crop)
        target = predictor.labels.index(sample.label)
        features = single.features(normalize(pixels[None], metadata.preprocessing), np.array([target]))[0][0].numpy()[0]
        started = time.perf_counter()
        cam = score_cam(single, pixels, features, target)
        seconds.append(time.perf_counter() - started)
        shown = upsample(place_in_frame(cam, frame, sample.image.shape[:2]), sample.mask.shape)
        hits.append(pointing_hit(shown, sample.mask))
    return {
        "layer": layer,
        "images": len(hits),
        "pointing_game": round(float(np.mean(hits)), 3),
        "median_seconds": round(float(np.median(seconds)), 2),
    }


def summarise(records: list[dict], variants: list[tuple[str, str]], predictor) -> dict:
    """Every figure with its interval, overall and per class."""
    groups = np.array([r["group"] for r in records])
    labels = np.array([r["label"] for r in records])
    classes = [label for label in predictor.labels if (labels == label).any()]

    def figure(values: list, keep: np.ndarray | None = None) -> dict:
        keep = np.ones(len(records), bool) if keep is None else keep
        values = np.asarray(values, dtype=np.float64)
        overall = group_bootstrap(values[keep], groups[keep], BOOTSTRAP_DRAWS, SEED).as_dict()
        overall["per_class"] = {
            c: group_bootstrap(values[keep & (labels == c)], groups[keep & (labels == c)], BOOTSTRAP_DRAWS, SEED).as_dict()
            for c in classes
        }
        return overall

    maps = {}
    for method, layer in variants:
        key = f"{method}@{layer}"
        entries = [r["maps"][key] for r in records]
        curved = np.array(["deletion" in e for e in entries])
        maps[key] = {
            "method": method,
            "layer": layer,
            "pointing_game": figure([e["hit"] for e in entries]),
            "relevance_mass": figure([e["mass"] for e in entries]),
            "border_mass": figure([e["border"] for e in entries]),
            "deletion_auc": figure([e.get("deletion", np.nan) for e in entries], curved),
            "insertion_auc": figure([e.get("insertion", np.nan) for e in entries], curved),
        }
    controlled = np.array(["control_predicted" in r for r in records])
    return {
        "images": len(records),
        "images_per_class": {c: int((labels == c).sum()) for c in classes},
        "slices": len(set(groups)),
        "accuracy": figure([r["predicted"] == r["label"] for r in records]),
        "mask_share": figure([r["mask_share"] for r in records]),
        "erased": {
            "tumour_kept": figure([r["erased_predicted"] == r["label"] for r in records]),
            "tumour_probability_drop": figure([r["erased_drop"] for r in records]),
            "control_kept": figure([r.get("control_predicted") == r["label"] for r in records], controlled),
            "held_out_fills": {
                style: {
                    "tumour_kept": figure([r["held_out"][style]["erased_predicted"] == r["label"] for r in records]),
                    "control_kept": figure(
                        [r["held_out"][style].get("control_predicted") == r["label"] for r in records], controlled
                    ),
                }
                for style in HELD_OUT_FILLS
                if records and all("held_out" in r for r in records)
            },
        },
        "maps": maps,
        "records": records,
    }


def choose(report: dict, served_before: str) -> dict:
    """The map to serve: the one that localises best, among maps within the serving-cost envelope.

    Localisation is the mean of its ranks on the pointing game and the relevance mass (higher is
    better on both); ties go to the lower deletion AUC (the more faithful map), then to the map served
    before. The envelope is ``COST_ENVELOPE`` times the cost of the map served before, so a better
    picture never makes the app noticeably slower. Deletion and insertion are reported beside it.
    """
    maps, costs = report["maps"], report["costs_ms"]
    budget = COST_ENVELOPE * costs.get(served_before, min(costs.values()))
    affordable = [key for key in maps if costs[key] <= budget]
    ranks = {key: 0.0 for key in affordable}
    for measure in ("pointing_game", "relevance_mass"):
        ordered = sorted(affordable, key=lambda key: -maps[key][measure]["value"])
        for position, key in enumerate(ordered):
            ranks[key] += (position + 1) / 2
    best = min(affordable, key=lambda key: (ranks[key], maps[key]["deletion_auc"]["value"], key != served_before))
    return {
        "method": maps[best]["method"],
        "layer": maps[best]["layer"],
        "served_before": served_before,
        "mean_rank": {key: value for key, value in sorted(ranks.items(), key=lambda item: item[1])},
        "rule": (
            "best mean rank on the pointing game and the relevance mass (ties: the lower deletion AUC) among the maps "
            f"whose forward-and-map pass costs at most {COST_ENVELOPE}x that of the map served before ({served_before})"
        ),
    }


def metadata_block(report: dict, command: str) -> dict:
    """What the model's metadata keeps: the served map's figures, the tumour-erased test and the comparison."""
    chosen = f"{report['chosen']['method']}@{report['chosen']['layer']}"
    served = report["maps"][chosen]
    return {
        "command": command,
        "subset": report.get("subset", "given"),
        "images": report["images"],
        "images_per_class": report["images_per_class"],
        "slices": report["slices"],
        "method": report["chosen"]["method"],
        "layer": report["chosen"]["layer"],
        "pointing_game": served["pointing_game"],
        "relevance_mass": served["relevance_mass"],
        "mask_share": report["mask_share"],
        "border_mass": served["border_mass"],
        "deletion_auc": served["deletion_auc"],
        "insertion_auc": served["insertion_auc"],
        "erased": report["erased"],
        "accuracy": report["accuracy"],
        "comparison": {
            key: {
                "pointing_game": figures["pointing_game"]["value"],
                "relevance_mass": figures["relevance_mass"]["value"],
                "border_mass": figures["border_mass"]["value"],
                "deletion_auc": figures["deletion_auc"]["value"],
                "insertion_auc": figures["insertion_auc"]["value"],
                "cost_ms": report["costs_ms"][key],
            }
            for key, figures in report["maps"].items()
        },
        "choice": {key: report["chosen"][key] for key in ("served_before", "rule")},
        **({"score_cam": report["score_cam"]} if "score_cam" in report else {}),
    }


def table(report: dict) -> str:
    """The comparison and the tumour-erased test as plain text."""

    def cell(figure: dict) -> str:
        return f"{figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"

    lines = [
        f"{report['model']}: {report['images']} images with masks ({report['slices']} slices), "
        f"accuracy {cell(report['accuracy'])}; a map spread evenly puts {report['mask_share']['value']:.3f} on the tumour",
        "",
        f"{'map':<34} {'pointing game':>22} {'relevance mass':>22} {'deletion':>8} {'insertion':>9} {'border':>7} {'ms':>6}",
    ]
    for key, figures in report["maps"].items():
        marker = " *" if key == f"{report['chosen']['method']}@{report['chosen']['layer']}" else ""
        lines.append(
            f"{method_name(figures['method']) + ' @ ' + figures['layer'] + marker:<34} {cell(figures['pointing_game']):>22} "
            f"{cell(figures['relevance_mass']):>22} {figures['deletion_auc']['value']:>8.3f} "
            f"{figures['insertion_auc']['value']:>9.3f} "
            f"{figures['border_mass']['value']:>7.3f} {report['costs_ms'][key]:>6.1f}"
        )
    chosen = report["maps"][f"{report['chosen']['method']}@{report['chosen']['layer']}"]
    lines += [
        "",
        "pointing game per class (served map *): "
        + ", ".join(f"{label} {cell(figure)}" for label, figure in chosen["pointing_game"]["per_class"].items()),
    ]
    erased = report["erased"]
    lines += [
        "",
        f"tumour erased, tumour class kept: {cell(erased['tumour_kept'])}; "
        + ", ".join(f"{label} {figure['value']:.3f}" for label, figure in erased["tumour_kept"]["per_class"].items()),
        f"same-size region erased elsewhere, class kept: {cell(erased['control_kept'])} "
        f"({erased['control_kept']['images']} images)",
        f"probability of the tumour class, mean drop when it is erased: {cell(erased['tumour_probability_drop'])}",
    ]
    for style, held in erased.get("held_out_fills", {}).items():
        lines.append(
            f"held-out fill '{style}': tumour class kept {cell(held['tumour_kept'])}, control kept {cell(held['control_kept'])}"
        )
    if "score_cam" in report:
        score = report["score_cam"]
        lines.append(
            f"Score-CAM @ {score['layer']}: pointing game {score['pointing_game']:.3f} on {score['images']} images, "
            f"{score['median_seconds']:.1f} s per slice (not served)"
        )
    return "\n".join(lines)


def write_into(folder: str | Path, block: dict, method: str, layer: str, carried_from: str | None = None) -> None:
    """Store the figures and the chosen map in a model folder's metadata, and rewrite its card."""
    from tumor_ai.model.metadata import METADATA_FILE, LocalisationRecord, ModelMetadata
    from tumor_ai.publish.card import write_model_card

    path = Path(folder) / METADATA_FILE
    metadata = ModelMetadata.read(path)
    metadata.localisation = LocalisationRecord.from_dict({**block, **({"carried_from": carried_from} if carried_from else {})})
    metadata.cam_method, metadata.cam_layer = method, layer
    path.write_text(metadata.to_json())
    write_model_card(folder)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    args = parse_args(argv, prog)
    from tumor_ai.model.metadata import ModelSourceError

    started = time.perf_counter()
    if args.report:
        report = json.loads(Path(args.report).read_text())
        report["chosen"] = choose(report, report["chosen"]["served_before"])  # the rule of this version
    else:
        try:
            report = measure(args)
        except (ModelSourceError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["command"] = " ".join(["tumor-ai localise", *(argv if argv is not None else sys.argv[1:])])
    print(table(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}")
    if args.write:
        block = metadata_block(report, report["command"])
        chosen = report["chosen"]
        write_into(args.model, block, chosen["method"], chosen["layer"])
        for folder in args.carry_to:
            write_into(folder, block, chosen["method"], chosen["layer"], carried_from=str(args.model))
        print(
            f"wrote the figures and the served map ({method_name(chosen['method'])} @ {chosen['layer']}) into "
            + ", ".join([args.model, *args.carry_to])
        )


if __name__ == "__main__":
    main()
