"""Training on counterfactuals: luminance input, erased tumours, controls, masks that move with their images, guidance."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS

from training.counterfactuals import CONTROL, ERASED, FILLS, class_growth, fill, make_variants
from training.guidance import mask_cells, outside_share
from training.pipeline import Swaps, make_pipeline
from training.train import main as train_main
from tumor_ai.core.preprocessing import luminance

BLOB = 242  # synthetic_slice draws the planted "tumour" at 0.95 of full scale


def _slice_with_blob(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size]
    head = (rows - size / 2) ** 2 / (0.42 * size) ** 2 + (cols - size / 2) ** 2 / (0.4 * size) ** 2 < 1
    texture = 90 + 20 * np.sin(rows / 3.0) * np.cos(cols / 4.0)
    blob = (rows - 22) ** 2 + (cols - 40) ** 2 < 36
    gray = np.where(head, texture, 0)
    gray = np.where(blob, BLOB, gray).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1), blob


def test_luminance_drops_colour_and_level():
    pixels, _ = _slice_with_blob()
    tinted = np.clip(pixels * np.array([1.0, 0.98, 1.03]), 0, 255).astype(np.float32)
    darker = pixels.astype(np.float32) * 0.5
    out = luminance(np.stack([pixels.astype(np.float32), tinted, darker]))
    assert out.shape == (3, 64, 64, 1)
    assert np.allclose(out[0], out[2], atol=1e-3), "a darker scan of the same head is the same input"
    assert np.abs(out[0] - out[1]).max() < 0.05, "a colour cast is gone"
    assert out[0][pixels[..., 0] == 0].max() == 0, "black stays black"


@pytest.mark.parametrize("style", FILLS)
def test_every_fill_hides_the_region_and_leaves_the_rest(style):
    pixels, blob = _slice_with_blob()
    region = blob | np.roll(blob, 1, axis=0)
    out = fill(pixels, region, style, np.random.default_rng(0))
    assert out.shape == pixels.shape and out.dtype == np.uint8
    grown = region | np.roll(region, 3, axis=1) | np.roll(region, -3, axis=1) | np.roll(region, 3, 0) | np.roll(region, -3, 0)
    assert np.array_equal(out[~grown], pixels[~grown]), "nothing far from the region changes"
    assert out[blob].mean() < 140, f"{style}: the bright blob is gone"


def test_variants_erase_the_tumour_relabel_it_and_keep_controls_clear_of_it():
    pixels, blob = _slice_with_blob()
    empty = np.zeros_like(pixels)
    empty[..., :] = np.where(pixels > 0, 90, 0).astype(np.uint8)
    images = np.stack([pixels, empty])
    masks = np.stack([blob, np.zeros_like(blob)])
    notumor = LABELS.index("notumor")
    bank = make_variants(images, np.array([0, notumor]), masks, notumor, per_kind=2, seed=0)
    erased, control = bank.variants_of(2)
    assert len(erased[0]) == 2 and len(erased[1]) == 0, "only a slice with a known tumour is erased"
    assert len(control[0]) >= 1 and len(control[1]) >= 1, "tumour and no-tumour slices both get controls"
    for k in erased[0]:
        assert bank.kind[k] == ERASED and bank.pixels[k][blob].mean() < 140
    for k in control[0]:
        assert bank.kind[k] == CONTROL and np.array_equal(bank.pixels[k][blob], pixels[blob]), "a control keeps the tumour"
        assert not np.array_equal(bank.pixels[k], pixels), "and hides something else"


def test_outline_growth_per_class_reads_its_flag_and_grows_that_class_more():
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    assert class_growth((2, 8), "", labels) == (2, 8), "without the flag: one pair, so the cached banks keep their names"
    assert class_growth((2, 8), "glioma=4:16, pituitary=1:2", labels) == ((4, 16), (2, 8), (2, 8), (1, 2))
    assert class_growth((2, 8), "glioma=2:8", labels) == (2, 8), "every class alike: the same bank as without the flag"
    for wrong in ("glioma=4", "edema=1:2", "glioma=9:3"):
        with pytest.raises(SystemExit, match="CLASS=MIN:MAX"):
            class_growth((2, 8), wrong, labels)
    pixels, blob = _slice_with_blob()
    images, masks = np.stack([pixels, pixels]), np.stack([blob, blob])
    growth = class_growth((1, 1), "glioma=6:6", labels)
    bank = make_variants(images, np.array([0, 1]), masks, labels.index("notumor"), per_kind=1, seed=0, grow=growth)
    erased, _ = bank.variants_of(2)
    changed = [int((bank.pixels[erased[i][0]] != pixels).any(axis=-1).sum()) for i in (0, 1)]
    assert changed[0] > changed[1], f"the glioma's erasure reaches further: {changed}"


def test_swaps_depend_on_seed_epoch_and_image_only_and_relabel_erasures():
    pixels = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((4, 2, 2, 3), np.uint8)
    swaps = Swaps(
        pixels=np.full((2, 2, 2, 3), 200, np.uint8),
        erased=[np.array([0]), np.array([], int)],
        control=[np.array([], int), np.array([1])],
        no_tumour=2,
        erase=0.5,
        control_rate=0.5,
    )
    seen = []
    for epoch in range(40):
        batch, labels = pixels[:2].copy(), np.array([0, 2])
        erased = swaps.apply(batch, labels, np.array([0, 1]), seed=3, epoch=epoch)
        again_batch, again_labels = pixels[:2].copy(), np.array([0, 2])
        assert np.array_equal(swaps.apply(again_batch, again_labels, np.array([0, 1]), seed=3, epoch=epoch), erased)
        assert np.array_equal(batch, again_batch) and np.array_equal(labels, again_labels)
        assert labels[0] == (2 if erased[0] else 0) and not erased[1]
        seen.append((bool(erased[0]), bool(batch[1].max() == 200)))
    assert 0.25 < np.mean([e for e, _ in seen]) < 0.75 and 0.25 < np.mean([c for _, c in seen]) < 0.75
    assert swaps.expected_targets(np.array([0, 2]), 4).tolist() == [0.5, 0.0, 1.5, 0.0]


def test_under_not_class_an_erased_tumour_is_no_longer_its_own_class():
    swaps = Swaps(
        pixels=np.full((1, 2, 2, 3), 200, np.uint8),
        erased=[np.array([0]), np.array([], int)],
        control=[np.array([], int), np.array([], int)],
        no_tumour=2,
        erase=1.0,
        control_rate=0.0,
        not_class=4,
    )
    labels = np.array([1, 2])
    erased = swaps.apply(np.zeros((2, 2, 2, 3), np.uint8), labels, np.array([0, 1]), seed=0, epoch=0)
    assert erased.tolist() == [True, False] and labels.tolist() == [4 + 1 + 1, 2], "'not meningioma', not 'no tumour'"
    assert swaps.expected_targets(np.array([1, 2]), 4).tolist() == [0.0, 0.0, 1.0, 0.0], "it adds to no class"


def test_masks_move_with_their_images_through_the_augmentation():
    pixels, blob = _slice_with_blob()
    images = np.stack([pixels] * 8)
    masks = np.stack([blob] * 8)
    dataset, _ = make_pipeline(images, np.zeros(8, np.int32), "luminance", 8, True, seed=1, masks=masks)
    (batch, shown), _ = next(iter(dataset))
    batch, shown = batch.numpy()[..., 0], shown.numpy()[..., 0]
    assert batch.shape == shown.shape == (8, 64, 64)
    for image, mask in zip(batch, shown):
        bright = image > np.percentile(image, 99) * 0.9
        assert mask.sum() > 10 and (bright & (mask > 0)).sum() / max(bright.sum(), 1) > 0.7, "the mask sits on the blob"


def test_outside_share_and_mask_cells():
    cam = np.zeros((1, 4, 4), np.float32)
    cam[0, 0, 0], cam[0, 3, 3] = 3.0, 1.0
    masks = np.zeros((1, 16, 16, 1), np.float32)
    masks[0, 1, 2] = 1.0  # one tumour pixel in the top-left cell
    inside = mask_cells(masks, (4, 4)).numpy()
    assert inside[0, 0, 0] == 1 and inside.sum() == 1
    assert float(outside_share(cam, inside)[0]) == pytest.approx(0.25, abs=1e-3)
    assert float(outside_share(np.zeros_like(cam), inside)[0]) == pytest.approx(1.0), "a vanished map is all outside"


def test_guidance_needs_masks(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--model", "cnn", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--guidance", "1"])
    assert "--guidance needs --masks" in capsys.readouterr().err


def test_the_card_says_how_the_model_was_taught_and_shows_where_it_looks_beside_accuracy():
    from tumor_ai.model.metadata import ModelMetadata
    from tumor_ai.publish.card import model_card, recipe_section

    assert recipe_section({"preprocessing": "rescale_unit"}) == [], "a plain recipe claims nothing"
    arguments = {"preprocessing": "luminance", "acquisition": True, "masks": "m", "erase": 0.2, "control": 0.2, "guidance": 0.5}
    text = "\n".join(recipe_section(arguments))
    assert "luminance only" in text and "JPEG quality" in text and "20% of the slices with a figshare tumour outline" in text
    assert "weight 0.5" in text and "Right for the right reasons" in text
    shipped = Path(__file__).resolve().parent.parent / "models" / "vgg16" / "tumor_ai.json"
    metadata = ModelMetadata.read(shipped)  # real localisation figures
    metadata.training = replace(metadata.training, arguments=arguments)
    metadata.preprocessing = "luminance"
    found, validation = metadata.localisation, metadata.metrics.validation
    card = model_card(metadata)
    row = next(line for line in card.splitlines() if line.startswith(f"| {validation.accuracy:.4f} |"))
    pointing, kept = found.pointing_game.value, found.erased.tumour_kept.value
    assert row.endswith(f"| {pointing:.0%} | {kept:.0%} |"), "where it looks sits beside accuracy"
    assert "## Trained to need the tumour" in card and "one channel of luminance" in card


def test_cues_report_what_the_network_input_still_gives_away(dataset_dir, tmp_path):
    from test_partial import write_partial

    from training.cues import ALL_CUES, cue_values
    from training.cues import main as cues_main

    pixels, _ = _slice_with_blob()
    tinted = np.clip(pixels * np.array([1.0, 0.9, 1.1]), 0, 255)
    assert cue_values(pixels.astype(np.float32))[0] == 0 and cue_values(tinted)[0] > 0, "colour is the channels' spread"
    root, _ = dataset_dir
    other = tmp_path / "other"
    write_partial(other, slices=6)
    out = tmp_path / "cues.json"
    cues_main(["--data", str(root), "--input-size", "48", "--cache-dir", str(tmp_path / "c"), "--out", str(out),
               "--other", str(other)])  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["auc"]) == {"decoded", "network input", "augmented input", "+ sequence remaps (30%)"}
    assert report["other_slices"] == 6, "one file per distinct slice of the other collection"
    for view, table in report["auc"].items():
        assert set(table) == {*ALL_CUES, "all together"}
        assert all(0 <= value <= 1 for found in table.values() for value in found.values())
        assert ("across" in table["skewness"]) == (view in ("decoded", "network input")), "served views only"
    assert report["auc"]["network input"]["colour"]["within"] == 0.5, "luminance leaves no colour to read"


def test_each_architecture_takes_only_its_own_preprocessing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--model", "vgg16", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--preprocessing", "luminance"])
    assert "--model vgg16 takes vgg16, vgg16_luminance" in capsys.readouterr().err


def test_vgg16_luminance_is_grey_rgb_with_the_level_fixed():
    from tumor_ai.core.preprocessing import normalize

    pixels, _ = _slice_with_blob()
    batch = np.stack([pixels.astype(np.float32), pixels.astype(np.float32) * 0.5])
    out = normalize(batch, "vgg16_luminance")
    assert out.shape == (2, 64, 64, 3)
    assert np.allclose(out[0], out[1], atol=1e-2), "a darker scan of the same head is the same input"
    grey = out[0] + np.array([103.939, 116.779, 123.68], np.float32)  # caffe means back: BGR channels equal
    assert np.allclose(grey[..., 0], grey[..., 2], atol=1e-3) and grey.max() <= 255.0
