"""``tumor-ai localise`` on models whose evidence is known, the CAM methods, the fill and the interval.

Two tiny models are built by hand, not trained: one decides "glioma" from a bright square (the
tumour, whose mask we hold), the other from a bright stripe along the bottom edge that every
tumour image also carries (a collection cue, as in the real dataset). The first must score a
pointing game of 1.0 and lose its answer when the square is erased; the second the opposite.
"""

from __future__ import annotations

import re
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import LABELS

from training.localisation import (
    area_under,
    border_mass,
    control_region,
    deletion_insertion_inputs,
    group_bootstrap,
    head_mask,
    pointing_hit,
    relevance_mass,
)
from training.localise import HELD_OUT_FILLS, MapReader, Sample, candidate_layers, held_out_fill, localise, stage_outputs
from tumor_ai.core.cam import CAM_METHODS
from tumor_ai.core.erase import fill_region
from tumor_ai.model.metadata import ModelMetadata, RefitRecord, TrainingRecord

SIZE = 64
TUMOUR = LABELS.index("glioma")


def evidence_model(threshold: float) -> tuple[keras.Model, ModelMetadata]:
    """'glioma' when pixels brighter than ``threshold`` are present, else 'no tumour': a known, local evidence."""
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    detector = keras.layers.Conv2D(2, 4, strides=4, activation="relu", name="evidence")
    features = detector(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    head = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")
    model = keras.Model(inputs, [head(pooled)], name="known_evidence")
    kernel = np.zeros((4, 4, 3, 2), np.float32)
    kernel[..., 0] = 1 / 48  # mean brightness of the 4x4 patch, 0..1
    detector.set_weights([kernel, np.array([-threshold, -1.0], np.float32)])
    dense = np.zeros((2, len(LABELS)), np.float32)
    dense[0, TUMOUR] = 6000.0
    head.set_weights([dense, np.array([0.0, -5.0, 4.0, -5.0], np.float32)])
    metadata = ModelMetadata(
        name="known",
        architecture="cnn",
        labels=list(LABELS),
        input_size=(SIZE, SIZE),
        preprocessing="rescale_unit",
        cam_layer="evidence",
    )
    return model, metadata


def slice_with(rng: np.random.Generator, tumour: bool, stripe: bool) -> tuple[np.ndarray, np.ndarray]:
    """A grey disc (the head) on black; optionally a bright square (the tumour, masked) and a bottom stripe."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    image = np.where((rows - 30) ** 2 + (cols - 32) ** 2 < 27**2, 100, 0).astype(np.float32)
    image += rng.normal(0, 4, image.shape) * (image > 0)
    mask = np.zeros((SIZE, SIZE), bool)
    if tumour:
        top, left = rng.integers(14, 34), rng.integers(14, 40)
        mask[top : top + 10, left : left + 10] = True
        image[mask] = 215
    if stripe:
        image[SIZE - 4 :, :] = 250
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(pixels[..., None], 3, axis=-1), mask


def samples(stripe: bool, count: int = 12) -> list[Sample]:
    rng = np.random.default_rng(1)
    made = []
    for index in range(count):
        image, mask = slice_with(rng, tumour=True, stripe=stripe)
        made.append(Sample(f"glioma/{index}.png", "glioma", image, mask, f"slice{index // 2}"))
    return made


@pytest.fixture(scope="module")
def square_predictor():
    from tumor_ai.core.inference import Predictor

    model, metadata = evidence_model(threshold=0.7)  # fires on the square (0.84), not the head (0.4)
    return Predictor(model, metadata, precision="float32")


@pytest.fixture(scope="module")
def stripe_predictor():
    from tumor_ai.core.inference import Predictor

    model, metadata = evidence_model(threshold=0.9)  # fires on the stripe (0.98) only
    return Predictor(model, metadata, precision="float32")


def test_a_model_that_reads_the_tumour_points_at_it_and_needs_it(square_predictor):
    report = localise(square_predictor, samples(stripe=False), ["grad_cam", "layer_cam"], ["evidence"], deletion_images=4)
    for key in ("grad_cam@evidence", "layer_cam@evidence"):
        figures = report["maps"][key]
        assert figures["pointing_game"]["value"] == 1.0
        assert figures["relevance_mass"]["value"] > 0.5 > report["mask_share"]["value"]
        assert figures["deletion_auc"]["value"] < figures["insertion_auc"]["value"]
    assert report["accuracy"]["value"] == 1.0
    assert report["erased"]["tumour_kept"]["value"] == 0.0  # erased: 'no tumour' every time
    assert report["erased"]["control_kept"]["value"] == 1.0  # the same erasure elsewhere changes nothing
    assert report["erased"]["tumour_probability_drop"]["value"] > 0.9
    assert report["chosen"]["layer"] == "evidence"
    for style in HELD_OUT_FILLS:  # fills no recipe trained on hide the tumour just as well
        held = report["erased"]["held_out_fills"][style]
        assert held["tumour_kept"]["value"] == 0.0, style
        assert held["control_kept"]["value"] == 1.0, style


@pytest.mark.parametrize("style", HELD_OUT_FILLS)
def test_a_held_out_fill_changes_only_the_region(style):
    """Each held-out fill hides the region (its bright square is gone) and leaves every other pixel as it was."""
    pixels = np.full((64, 64, 3), 40, np.uint8)
    pixels[20:30, 20:30] = 250
    region = np.zeros((64, 64), bool)
    region[18:32, 18:32] = True
    filled = held_out_fill(pixels, region, style)
    assert filled.shape == pixels.shape and filled.dtype == pixels.dtype
    assert (filled[~region] == pixels[~region]).all()
    assert filled[region].max() < 200


@pytest.mark.parametrize("style", HELD_OUT_FILLS)
def test_a_held_out_fill_does_not_let_the_tumour_through(style):
    """A tight outline (the tumour's bright rim just outside it, as figshare's often are) is still erased: the
    filled region is nearer the surroundings' grey than the tumour's. A plain blur of the box and biharmonic
    inpainting both failed this (a bright blob, or an overshoot), so "kept" measured a tumour still there."""
    pixels = np.full((96, 96, 3), 40, np.uint8)
    pixels[30:60, 30:60] = 220
    region = np.zeros((96, 96), bool)
    region[31:59, 31:59] = True  # one px of the tumour's rim stays visible
    filled = held_out_fill(pixels, region, style)
    assert filled[region].mean() < (40 + 220) / 2


def test_a_model_that_reads_the_border_misses_the_tumour_and_keeps_its_answer(stripe_predictor):
    report = localise(stripe_predictor, samples(stripe=True), ["grad_cam"], ["evidence"], deletion_images=0)
    figures = report["maps"]["grad_cam@evidence"]
    assert report["accuracy"]["value"] == 1.0  # right answers, for the wrong reason
    assert figures["pointing_game"]["value"] == 0.0
    assert figures["relevance_mass"]["value"] < 0.05
    assert figures["border_mass"]["value"] > 0.9
    assert report["erased"]["tumour_kept"]["value"] == 1.0
    assert report["erased"]["tumour_probability_drop"]["value"] < 0.01


def test_serving_draws_the_map_its_metadata_names(square_predictor):
    """The app's Predictor and localise's reader give the same map for every method: what is measured is what is shown."""
    from tumor_ai.core.inference import Predictor

    sample = samples(stripe=False, count=1)[0]
    reader = MapReader(square_predictor, ["evidence"])
    batch = square_predictor.prepare([sample.image])
    measured = reader.maps(batch, np.array([TUMOUR]), list(CAM_METHODS))
    for method in CAM_METHODS:
        served = Predictor(square_predictor.model, replace(square_predictor.metadata, cam_method=method), precision="float32")
        np.testing.assert_allclose(served.explain(sample.image, TUMOUR), measured[(method, "evidence")][0], atol=1e-5)


def test_cam_methods_match_their_formulas():
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
    gradients = rng.normal(0, 1, (2, 5, 5, 3)).astype(np.float32)

    def scaled(cam):
        cam = np.maximum(cam, 0)
        return cam / (cam.max(axis=(1, 2), keepdims=True) + 1e-8)

    expected = {
        "grad_cam": scaled((gradients.mean(axis=(1, 2), keepdims=True) * features).sum(-1)),
        "hires_cam": scaled((gradients * features).sum(-1)),
        "layer_cam": scaled((np.maximum(gradients, 0) * features).sum(-1)),
    }
    for method, maps in expected.items():
        np.testing.assert_allclose(np.asarray(CAM_METHODS[method](features, gradients)), maps, atol=1e-5)
    plus = np.asarray(CAM_METHODS["grad_cam_plus_plus"](features, gradients))
    assert plus.shape == (2, 5, 5) and plus.min() >= 0 and np.isclose(plus.max(), 1.0, atol=1e-4)


def test_the_fill_hides_a_bright_region_and_leaves_the_rest():
    image, mask = slice_with(np.random.default_rng(3), tumour=True, stripe=False)
    filled = fill_region(image, mask)
    assert np.array_equal(filled[~mask], image[~mask])
    assert abs(float(filled[mask].mean()) - 100) < 12  # the head's grey, not the tumour's 215
    assert fill_region(image, np.zeros_like(mask)) is image
    with pytest.raises(ValueError, match="does not match"):
        fill_region(image, mask[:10])


def test_the_fill_adds_no_structure_of_its_own():
    """A large hidden block of a left-to-right ramp comes back as a ramp: no rings or steps a model could read as a lesion."""
    ramp = np.tile(np.linspace(40, 220, 200, dtype=np.float32), (160, 1))
    noisy = np.clip(ramp + np.random.default_rng(0).normal(0, 3, ramp.shape), 0, 255).astype(np.uint8)
    hidden = np.zeros(ramp.shape, bool)
    hidden[30:130, 50:150] = True
    filled = fill_region(noisy, hidden).astype(np.float32)
    inside = filled[40:120, 60:140]
    assert np.abs(inside - ramp[40:120, 60:140]).mean() < 12  # close to what was there
    assert (np.diff(inside.mean(axis=0)) > -0.5).all()  # brightness still rises left to right
    assert np.abs(np.diff(inside, axis=0)).max() < 4  # and is smooth down each column


def test_pointing_relevance_border_and_curves():
    mask = np.zeros((512, 512), bool)
    mask[100:150, 100:150] = True
    cam = np.zeros((512, 512), np.float32)
    cam[160, 125] = 1.0  # 11 px below the tumour: within 15 px
    assert pointing_hit(cam, mask)
    cam[160, 125], cam[170, 125] = 0.0, 1.0  # 21 px: a miss
    assert not pointing_hit(cam, mask)
    assert not pointing_hit(np.zeros_like(cam), mask)
    spread = np.ones((512, 512), np.float32)
    assert relevance_mass(spread, mask) == pytest.approx(mask.mean())
    assert border_mass(spread) == pytest.approx(1 - 0.8**2, abs=0.01)
    assert area_under(np.ones(17)) == pytest.approx(1.0) and area_under(np.linspace(1, 0, 17)) == pytest.approx(0.5)
    pixels = np.full((8, 8, 3), 200, np.uint8)
    deleted, inserted = deletion_insertion_inputs(pixels, np.eye(8, dtype=np.float32), steps=4)
    assert deleted.shape == inserted.shape == (5, 8, 8, 3)
    assert (deleted[0] == pixels).all() and (deleted[-1] == 0).all() and (inserted[-1] == pixels).all()


def test_bootstrap_resamples_whole_slices():
    values = np.array([1.0, 1.0, 1.0, 0.0])
    interval = group_bootstrap(values, np.array(["a", "a", "a", "b"]), draws=400)
    assert interval.value == 0.75 and interval.low < 0.75 < interval.high + 1e-9
    constant = group_bootstrap(np.ones(5), np.arange(5), draws=100)
    assert (constant.low, constant.high) == (1.0, 1.0)


def test_control_region_is_the_same_shape_elsewhere_in_the_head():
    image, mask = slice_with(np.random.default_rng(4), tumour=True, stripe=False)
    moved = control_region(mask, head_mask(image), np.random.default_rng(0))
    assert moved is not None and moved.sum() == mask.sum() and not (moved & mask).any()


def test_candidate_layers_are_stage_outputs(slot_predictors):
    model = slot_predictors["cnn"].model  # 48 px: stem 24, block1 12, block2 6
    assert stage_outputs(model) == ["block2_out", "block1_out", "stem_relu"]
    assert candidate_layers(model, "block2_out") == ["block2_out", "block1_out"]


def _painted(region: np.ndarray, scale: int = 2) -> dict:
    """The editor's value with ``region`` painted in one layer, at ``scale`` times the slice (a display copy's size)."""
    alpha = np.kron(region.astype(np.uint8), np.ones((scale, scale), np.uint8)) * 255
    layer = np.zeros((*alpha.shape, 4), np.uint8)
    layer[..., 0], layer[..., 2], layer[..., 3] = 255, 255, alpha
    return {"background": None, "layers": [layer], "composite": None}


def test_hiding_the_painted_tumour_changes_the_answer_and_hiding_elsewhere_does_not(square_predictor):
    """The app's "hide a region and ask again": the painted pixels, scaled to the slice, are what gets filled."""
    import gradio as gr

    from tumor_ai.app import handlers
    from tumor_ai.core.imaging import LoadedImage

    image, mask = slice_with(np.random.default_rng(5), tumour=True, stripe=False)
    state = handlers.SessionSlice("upload.png", LoadedImage(image))
    predictors = {"known": square_predictor}
    answer = handlers.hide_and_ask(predictors, _painted(mask | np.roll(mask, 1, axis=0)), state)
    picture, text = answer.hidden, answer.answers
    assert "**known changes its answer**: Glioma 100% → No tumour 98%" in text
    assert re.search(r"\| Glioma \| 99\.\d% → \d\.\d% \(-9\d\.\d%\) \|", text)  # before, after, change
    assert picture.endswith("hidden.jpg")
    elsewhere = control_region(mask, head_mask(image), np.random.default_rng(0))
    text = handlers.hide_and_ask(predictors, _painted(elsewhere), state).answers
    assert "**known keeps its answer**: Glioma 100% → Glioma 100%" in text
    with pytest.raises(gr.Error, match="Paint over the region"):
        handlers.hide_and_ask(predictors, _painted(np.zeros_like(mask)), state)
    with pytest.raises(gr.Error, match="press Predict or Compare first"):
        handlers.hide_and_ask(predictors, _painted(mask), None)


def test_the_figures_reach_the_metadata_and_both_cards(square_predictor, tmp_path):
    """--write stores the figures and the chosen map in the split run; --carry-to gives a refit the same, saying whose."""
    from training.localise import metadata_block, write_into
    from tumor_ai.model.folder import save_model_folder
    from tumor_ai.model.metadata import ModelMetadata
    from tumor_ai.publish.card import localisation_summary

    report = localise(square_predictor, samples(stripe=False), ["grad_cam", "layer_cam"], ["evidence"], deletion_images=4)
    block = metadata_block(report, "tumor-ai localise --model split-run")
    folders = [
        save_model_folder(square_predictor.model, square_predictor.metadata, tmp_path / name) for name in ("split", "refit")
    ]
    write_into(folders[0], block, report["chosen"]["method"], report["chosen"]["layer"])
    write_into(folders[1], block, report["chosen"]["method"], report["chosen"]["layer"], carried_from="split-run")
    for folder in folders:
        metadata = ModelMetadata.read(folder / "tumor_ai.json")
        assert metadata.cam_method == report["chosen"]["method"] and metadata.localisation.pointing_game.value == 1.0
        card = (folder / "README.md").read_text()
        assert "## Where the model looks, and whether it needs the tumour" in card
        assert "| pointing game: the map's peak within 15 px (at 512 px) of the tumour | 100% (100%–100%) |" in card
        assert "It needs the lesion for most answers" in localisation_summary(metadata)
    assert "These figures are the split run's (`split-run`)" in (folders[1] / "README.md").read_text()


def test_the_command_on_a_folder_of_images_and_masks(square_predictor, tmp_path, capsys):
    """``tumor-ai localise`` end to end: the validation images with masks, the table, the report, --write, --report."""
    import json

    from PIL import Image

    from training.localise import main
    from tumor_ai.model.folder import save_model_folder
    from tumor_ai.model.metadata import ModelMetadata

    data, masks = tmp_path / "data", tmp_path / "masks"
    rng = np.random.default_rng(7)
    rows, validation = [], []
    for index in range(8):
        image, mask = slice_with(rng, tumour=True, stripe=False)
        (data / "glioma").mkdir(parents=True, exist_ok=True)
        (masks / "glioma").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / "glioma" / f"g{index}.png")
        Image.fromarray(mask).convert("1").save(masks / "glioma" / f"g{index}.png")
        rows.append(f"glioma/g{index}.png,{index // 2}")
        if index < 6:
            validation.append(f"glioma/g{index}.png")  # two images stay in 'training': not scored
    (data / "notumor").mkdir()
    Image.fromarray(slice_with(rng, tumour=False, stripe=False)[0]).save(data / "notumor" / "n0.png")  # no mask: not scored
    (masks / "masks.csv").write_text("kaggle_path,figshare_id\n" + "\n".join(rows) + "\n")
    model = save_model_folder(square_predictor.model, square_predictor.metadata, tmp_path / "model")
    (model / "split.json").write_text(json.dumps({"validation": validation + ["notumor/n0.png"]}))
    out = tmp_path / "report.json"
    common = ["--model", str(model), "--data", str(data), "--masks", str(masks)]
    main(
        [
            *common,
            "--layers",
            "evidence",
            "--methods",
            "grad_cam",
            "layer_cam",
            "--deletion-images",
            "2",
            "--out",
            str(out),
            "--write",
        ]
    )
    printed = capsys.readouterr().out
    assert "6 images with masks (3 slices)" in printed and "tumour erased, tumour class kept: 0.000" in printed
    report = json.loads(out.read_text())
    assert {record["path"] for record in report["records"]} == set(validation)
    written = ModelMetadata.read(model / "tumor_ai.json")
    assert written.localisation.images == 6 and written.localisation.command.startswith("tumor-ai localise --model")
    main([*common, "--report", str(out), "--write"])  # choose again from the saved report, no model run
    assert "wrote the figures and the served map" in capsys.readouterr().out
    written.training = TrainingRecord(refit=RefitRecord(of="split-run", epochs=1))
    (model / "tumor_ai.json").write_text(written.to_json())
    with pytest.raises(SystemExit, match="is a refit on every image"):
        main(common)
