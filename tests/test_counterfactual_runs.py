"""Training runs with tumour-erased counterfactuals and map guidance (slow: they train)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_dataset
from PIL import Image
from test_counterfactuals import BLOB

from training import engine
from training.pipeline import Swaps
from training.train import main as train_main
from tumor_ai.model.folder import load_model

pytestmark = pytest.mark.slow


def _masks_for(root: Path, masks_root: Path) -> None:
    """The planted blobs of the synthetic dataset as mask PNGs, as the figshare outlines are laid out."""
    for path in sorted(root.glob("*/*.png")):
        pixels = np.asarray(Image.open(path))
        blob = pixels >= BLOB - 1
        if path.parent.name != "notumor" and blob.sum() > 4:
            (masks_root / path.parent.name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(blob).save(masks_root / path.parent.name / path.name)


def _outlined_cnn_run(tmp_path: Path, per_class: int, seed: int, epochs: int) -> tuple[Path, Path, Path, Path, list[str]]:
    """A synthetic dataset with its blobs' outlines: (data, masks, output, cache) and a small CNN run's arguments."""
    root, masks_root = tmp_path / "data", tmp_path / "masks"
    write_dataset(root, per_class=per_class, seed=seed)
    _masks_for(root, masks_root)
    arguments = ["--model", "cnn", "--input-size", "48", "--batch-size", "8", "--warmup-epochs", "1", "--epochs", str(epochs)]
    return root, masks_root, tmp_path / "cnn", tmp_path / "c", arguments


def test_a_counterfactual_guided_run_records_its_recipe(tmp_path):
    root, masks_root, out, cache, arguments = _outlined_cnn_run(tmp_path, per_class=12, seed=2, epochs=3)
    recipe = ["--acquisition", "--masks", str(masks_root), "--guidance", "1", "--guidance-from", "1", "--guidance-ramp", "1"]
    train_main([*arguments, *recipe, "--data", str(root), "--out", str(out), "--cache-dir", str(cache)])
    model, metadata = load_model(out)
    assert model.input.shape[-1] == 1 and metadata.preprocessing == "luminance"
    assert metadata.training.arguments["masks"] == str(masks_root) and metadata.training.arguments["guidance"] == 1
    history = engine.read_history(engine.run_directory(cache, out))
    assert history["guidance_weight"] == [0.0, 1.0, 1.0], "off, then on after --guidance-from"
    assert all(0.0 <= value <= 1.0 for value in history["outside"])
    assert "val_outside" not in history, "validation has no masks, so no such figure"
    assert list((cache / "counterfactuals").glob("*.npz")), "the variants are made once and cached"


def test_a_run_with_soft_erased_labels_trains_and_records_them(tmp_path):
    root, masks_root, out, cache, arguments = _outlined_cnn_run(tmp_path, per_class=8, seed=4, epochs=1)
    recipe = ["--masks", str(masks_root), "--erase", "0.6", "--erased-label", "not-class"]
    train_main([*arguments, *recipe, "--data", str(root), "--out", str(out), "--cache-dir", str(cache)])
    _, metadata = load_model(out)
    assert metadata.training.arguments["erased_label"] == "not-class"
    assert np.isfinite(engine.read_history(engine.run_directory(cache, out))["loss"]).all()
    with pytest.raises(SystemExit):
        train_main([*arguments, "--erased-label", "not-class", "--data", str(root), "--out", str(tmp_path / "x")])


def test_a_guided_vgg16_swaps_cached_counterfactual_features(tmp_path):
    from training.vgg16 import FeatureSwaps, feature_pipeline

    root, masks_root = tmp_path / "data", tmp_path / "masks"
    write_dataset(root, per_class=10, seed=3)
    _masks_for(root, masks_root)
    out, cache = tmp_path / "vgg16", tmp_path / "c"
    arguments = ["--model", "vgg16", "--input-size", "32", "--batch-size", "8", "--backbone-weights", "none"]
    recipe = ["--preprocessing", "vgg16_luminance", "--acquisition", "--masks", str(masks_root), "--guidance", "1"]
    schedule = ["--head-epochs", "1", "--epochs", "2", "--guidance-from", "1", "--guidance-ramp", "1"]
    train_main([*arguments, *recipe, *schedule, "--data", str(root), "--out", str(out), "--cache-dir", str(cache)])
    model, metadata = load_model(out)
    assert metadata.preprocessing == "vgg16_luminance" and model.input.shape[-1] == 3
    assert (metadata.cam_layer, metadata.cam_method) == ("block4_conv3", "layer_cam"), "the guided map is the served one"
    history = engine.read_history(engine.run_directory(cache, out))
    assert history["guidance_weight"] == [0.0, 1.0] and all(0.0 <= value <= 1.0 for value in history["outside"])
    features = metadata.training.features
    assert features.counterfactual_variants > 0 and len(list((cache / "features").glob("vgg16_*.npy"))) == 4
    assert len(list((cache / "features").glob("pooled_*.npy"))) == 1, "the head's inputs, cached for the next run"

    # The pipeline: an erased swap is labelled no tumour and guides nowhere; masks follow mirror and shift.
    variants = [np.zeros((3, 4, 4, 2), np.float16), np.ones((3, 4, 4, 2), np.float16)]
    bank = np.full((2, 4, 4, 2), 7, np.float16)  # row 0 erased (of image 0), row 1 a control (of image 1)
    none = np.array([], int)
    swaps = Swaps(bank, [np.array([0]), none, none], [none, np.array([1]), none], 2, 1.0, 1.0)
    cells = np.zeros((3, 4, 4), np.float32)
    cells[:, 0, 0] = 1
    dataset, _ = feature_pipeline(variants, np.arange(3), np.array([0, 1, 1]), 3, True, 0, 0, FeatureSwaps(swaps, cells))
    (batch, masks), labels = next(iter(dataset))
    order = {tuple(np.asarray(row)[:1, 0, 0]) for row in batch.numpy()}
    assert (7.0,) in order
    for row, label, mask in zip(batch.numpy(), labels.numpy(), masks.numpy()[..., 0]):
        if row[0, 0, 0] == 7 and label == 2:
            assert mask.sum() == 0, "an erased tumour guides nowhere"
        elif row[0, 0, 0] == 7:
            assert label == 1 and mask[0, 0] == 1, "a control keeps its label and its tumour"
        elif row[0, 0, 0] == 1:
            assert mask[0, 3] == 1 and mask.sum() == 1, "the mirror variant's mask is mirrored"
