"""The faster serving path answers as the reference path does (issue 42, part 2).

Serving normalises numpy batches in numpy (the training pipeline's tensors go through ``keras.ops``), takes the
not-an-MRI check's statistics channel by channel and keeps them per slice, and colours each answer's map once.
The reference path here is the one these replaced: ``keras.ops`` normalisation, the statistics on a float RGB copy
with ``ndimage.binary_fill_holes``, and every picture coloured on its own. The unit tests use small synthetic
inputs; the tests marked slow run both shipped models on the example slices and need the same classes, MRI
verdicts and map peaks, and maps close in value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tumor_ai.core import mri_check
from tumor_ai.core.explain import coloured, heatmap, overlay
from tumor_ai.core.imaging import pixel_key, read_image
from tumor_ai.core.preprocessing import NORMALIZERS, luminance, vgg16_luminance

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg"))


def through_ops(name: str, batch: np.ndarray) -> np.ndarray:
    """The normalisation as the training pipeline runs it: on a tensor, with ``keras.ops``."""
    import tensorflow as tf

    return NORMALIZERS[name](tf.convert_to_tensor(np.asarray(batch, np.float32))).numpy()


def reference_statistics(pixels: np.ndarray) -> np.ndarray:
    """``mri_check.image_statistics`` as it was: on a float RGB copy, holes filled by ``binary_fill_holes``."""
    from tumor_ai.core.preprocessing import resize

    small = resize(pixels, mri_check.STATISTICS_SIZE).astype(np.float32) / 255.0
    saturation = float((small.max(axis=-1) - small.min(axis=-1)).mean())
    gray = small.mean(axis=-1)
    frame = np.ones(gray.shape, dtype=bool)
    margin = mri_check.STATISTICS_SIZE[0] // 8
    frame[margin:-margin, margin:-margin] = False
    head = gray > mri_check.HEAD_LEVEL
    size = max(int(head.sum()), 1)
    rows, cols = np.gradient(gray)
    flat = (np.abs(rows) < mri_check.FLAT_STEP) & (np.abs(cols) < mri_check.FLAT_STEP)
    filled = ndimage.binary_fill_holes(head)
    interior = ndimage.binary_erosion(filled, iterations=mri_check.RIM_WIDTH)
    rim = filled & ~interior
    tiny = 1e-3
    if interior.any():
        inside = gray[interior]
        level = float(inside.mean()) + tiny
        brightest = filled & (gray >= np.quantile(gray[filled], 0.95))
        fine = np.abs(gray - ndimage.gaussian_filter(gray, 1.0))[interior]
        spread = (np.quantile(inside, 0.75) - np.quantile(inside, 0.25)) / (np.median(inside) + tiny)
        shape = [
            float(gray[rim].mean() / level) if rim.any() else 0.0,
            float((brightest & rim).sum() / max(int(brightest.sum()), 1)),
            float(np.log(np.median(fine) / level + tiny)),
            float(filled.mean()),
            float(np.log(spread + tiny)),
        ]
    else:
        shape = [0.0, 0.0, float(np.log(tiny)), float(filled.mean()), float(np.log(tiny))]
    plain = [
        saturation,
        float(gray.std()),
        float((gray < mri_check.HEAD_LEVEL).mean()),
        float(gray[frame].mean()),
        float((gray >= 0.98)[head].sum() / size),
        float(flat[head].sum() / size),
    ]
    return np.array(plain + shape, dtype=np.float32)


def synthetic_rgb(seed: int, shape: tuple[int, int] = (160, 200)) -> np.ndarray:
    """A grey head on black with a little colour noise: something for every statistic and the head's mean."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    radius = np.hypot((rows - shape[0] / 2) / (shape[0] * 0.4), (cols - shape[1] / 2) / (shape[1] * 0.4))
    gray = np.where(radius < 1, 90 + 60 * rng.random(shape), 0.0)
    gray[radius < 0.2] = 0  # a hole in the head
    tint = rng.integers(-6, 7, (*shape, 3))
    return np.clip(gray[..., None] + tint * (radius < 1)[..., None], 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def empty_statistics_cache():
    mri_check._STATISTICS_CACHE.clear()
    yield
    mri_check._STATISTICS_CACHE.clear()


@pytest.mark.parametrize("normaliser", [luminance, vgg16_luminance])
def test_numpy_normalisation_matches_the_ops_the_training_pipeline_runs(normaliser):
    batch = np.stack([synthetic_rgb(seed, (64, 64)) for seed in range(3)]).astype(np.float32)
    fast = normaliser(batch)
    assert isinstance(fast, np.ndarray) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, through_ops(normaliser.__name__, batch), rtol=1e-6, atol=1e-4)


def test_numpy_normalisation_leaves_its_input_alone():
    batch = np.stack([synthetic_rgb(1, (32, 32))]).astype(np.float32)
    kept = batch.copy()
    vgg16_luminance(batch)
    luminance(batch)
    assert np.array_equal(batch, kept)


def test_a_blank_batch_stays_black():
    assert not luminance(np.zeros((2, 8, 8, 3), np.float32)).any()


@pytest.mark.parametrize("seed", range(6))
def test_filling_holes_by_labelling_is_binary_fill_holes(seed):
    mask = np.random.default_rng(seed).random((40, 50)) < 0.55 + 0.05 * seed
    assert np.array_equal(mri_check.fill_holes(mask, ndimage), ndimage.binary_fill_holes(mask))


@pytest.mark.parametrize("mask", [np.zeros((9, 9), bool), np.ones((9, 9), bool)])
def test_filling_holes_of_an_empty_and_a_full_mask(mask):
    assert np.array_equal(mri_check.fill_holes(mask, ndimage), ndimage.binary_fill_holes(mask))


@pytest.mark.parametrize("seed", range(3))
def test_statistics_channel_by_channel_are_those_of_the_float_copy(seed):
    pixels = synthetic_rgb(seed)
    np.testing.assert_allclose(mri_check.image_statistics(pixels), reference_statistics(pixels), rtol=1e-5, atol=1e-6)


def test_a_slice_seen_before_is_not_measured_again(monkeypatch):
    calls = []
    measure = mri_check._image_statistics
    monkeypatch.setattr(mri_check, "_image_statistics", lambda pixels: calls.append(1) or measure(pixels))
    pixels = synthetic_rgb(0)
    first = mri_check.image_statistics(pixels)
    first[:] = -1  # the caller's copy: the kept statistics do not change
    again = mri_check.image_statistics(pixels.copy())  # the same content in another array
    assert len(calls) == 1
    np.testing.assert_array_equal(again, measure(pixels))
    mri_check.image_statistics(synthetic_rgb(1))
    mri_check.image_statistics(pixels[:, ::-1])  # its mirror is another slice
    assert len(calls) == 3


def test_the_cache_keeps_only_the_latest_slices():
    for seed in range(mri_check.STATISTICS_CACHE + 3):
        mri_check.image_statistics(np.full((8, 8, 3), seed, np.uint8))
    assert len(mri_check._STATISTICS_CACHE) == mri_check.STATISTICS_CACHE


def test_the_key_is_the_content_and_its_shape():
    pixels = synthetic_rgb(2, (12, 12))
    assert pixel_key(pixels) == pixel_key(pixels.copy()) == pixel_key(np.asfortranarray(pixels))
    assert pixel_key(pixels) != pixel_key(pixels.reshape(6, 24, 3))


def test_pictures_from_the_map_coloured_once_are_those_coloured_each_time():
    rng = np.random.default_rng(0)
    cam = rng.random((7, 9)).astype(np.float32)
    display = synthetic_rgb(3, (70, 90))
    colours = coloured(cam, display.shape[:2])
    for opacity in (0.0, 0.45, 1.0):
        assert np.array_equal(overlay(display, cam, opacity, colours), overlay(display, cam, opacity))
    assert np.array_equal(heatmap(cam, display.shape[:2], colours), heatmap(cam, display.shape[:2]))
    smaller = synthetic_rgb(3, (35, 45))  # colours of another size are not used
    assert np.array_equal(overlay(smaller, cam, 0.5, colours), overlay(smaller, cam, 0.5))


def test_an_answer_colours_its_map_once_and_redraws_from_it(slot_predictors, example_paths, monkeypatch):
    from tumor_ai.app import reader as reader_module
    from tumor_ai.app.reader import Reader

    made = []
    monkeypatch.setattr(reader_module, "coloured", lambda cam, size: made.append(size) or coloured(cam, size))
    reader = Reader(slot_predictors)
    answer = reader.classify(read_image(example_paths["glioma"]), "cnn", opacity=0.3)
    shown = answer.drawn.cam
    assert np.array_equal(answer.drawn.overlay, overlay(answer.display, shown, 0.3))
    assert np.array_equal(answer.drawn.heatmap, heatmap(shown, answer.display.shape[:2]))
    stronger = reader.draw(answer, opacity=0.8)
    assert np.array_equal(stronger.overlay, overlay(answer.display, shown, 0.8))
    assert len(made) == 1, "the slider re-blends the answer's coloured map"


# The shipped models on the example slices: the serving path against the reference path.


def reference_prediction(predictor, pixels: np.ndarray) -> dict:
    """One slice through the reference path: ``keras.ops`` normalisation, the float-copy statistics."""
    from tumor_ai.core.cam import place_in_frame
    from tumor_ai.core.preprocessing import model_input

    prepared, frame = model_input(pixels, tuple(predictor.metadata.input_size), predictor.metadata.crop)
    outputs = predictor.run(through_ops(predictor.metadata.preprocessing, prepared[None]))
    statistics = reference_statistics(pixels)[None]
    check = predictor.mri_check
    is_mri = bool(check.passes(statistics, check.distances(outputs["embedding"]), outputs["embedding"])[0])
    probabilities = outputs["probabilities"][0]
    return {
        "label": predictor.labels[int(np.argmax(probabilities))],
        "probabilities": probabilities,
        "is_mri": is_mri,
        "cam": place_in_frame(outputs["cam"][0], frame, pixels.shape[:2]),
    }


@pytest.fixture(scope="module", params=["cnn", "vgg16"])
def shipped(request):
    from tumor_ai.core.inference import Predictor

    return Predictor.from_source(ROOT / "models" / request.param)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_the_serving_path_answers_as_the_reference_path(shipped, path):
    pixels = read_image(path).pixels
    reference = reference_prediction(shipped, pixels)
    served = shipped.predict([pixels])[0]
    assert served.label == reference["label"]
    assert served.is_mri == reference["is_mri"]
    np.testing.assert_allclose(list(served.probabilities.values()), reference["probabilities"], atol=1e-4)
    assert served.cam.shape == reference["cam"].shape
    peak = np.unravel_index(np.argmax(served.cam), served.cam.shape)
    assert peak == np.unravel_index(np.argmax(reference["cam"]), reference["cam"].shape)
    np.testing.assert_allclose(served.cam, reference["cam"], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_compare_measures_each_slice_once_and_draws_what_each_model_found(shipped, path, monkeypatch):
    from tumor_ai.app.reader import Reader

    measured = []
    measure = mri_check._image_statistics
    monkeypatch.setattr(mri_check, "_image_statistics", lambda pixels: measured.append(1) or measure(pixels))
    image = read_image(path)
    comparison = Reader({"first": shipped, "second": shipped}).compare(image, 0.45)
    assert len(measured) == 1, "the second model reads the first one's statistics"
    for answer in comparison.answers.values():
        if answer.drawn is not None:
            cam = answer.drawn.cam
            assert np.array_equal(answer.drawn.overlay, overlay(answer.display, cam, 0.45))


def test_distances_through_blas_are_the_three_operand_einsum():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(5, 16)).astype(np.float32)
    check = mri_check.MriCheck.fit(rng.normal(size=(200, 16)).astype(np.float32), rng.random((200, 11)), rng.integers(0, 3, 200))
    squared = [np.einsum("ij,jk,ik->i", embeddings - mean, check.precision, embeddings - mean) for mean in check.means]
    np.testing.assert_allclose(check.distances(embeddings), np.sqrt(np.maximum(np.min(squared, axis=0), 0)), rtol=1e-5)
