"""The head crop, and that training's decode-once cache and serving give one file the same input array."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_slice
from PIL import Image

from training.data import load_folder
from tumor_ai.core.imaging import read_image
from tumor_ai.core.preprocessing import crop_frame, head_frame, model_input


def _head_on_canvas(height: int, width: int, top: int, left: int, size: int = 96) -> np.ndarray:
    head = synthetic_slice("glioma", np.random.default_rng(0), size)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[top : top + size, left : left + size] = head[..., None]
    return canvas


def test_head_frame_is_a_square_around_the_head():
    pixels = _head_on_canvas(300, 400, top=120, left=40, size=160)
    top, left, height, width = head_frame(pixels)
    assert height == width, "the frame is square, so the aspect ratio is kept"
    head_rows = np.flatnonzero(pixels.max(axis=(1, 2)) > 0)
    head_cols = np.flatnonzero(pixels.max(axis=(0, 2)) > 0)
    assert top <= head_rows[0] and top + height >= head_rows[-1] + 1
    assert left <= head_cols[0] and left + width >= head_cols[-1] + 1
    assert height <= 1.25 * (head_rows[-1] - head_rows[0] + 1), "the frame hugs the head"


def test_head_crop_ignores_small_bright_marks():
    pixels = _head_on_canvas(300, 300, top=100, left=100, size=160)
    pixels[5:15, 5:40] = 255  # a burnt-in text label in the corner
    top, left, _, _ = head_frame(pixels)
    assert top > 50 and left > 50


def test_frame_past_the_edge_is_padded_black():
    pixels = _head_on_canvas(120, 120, top=0, left=20)
    frame = head_frame(pixels)
    cropped = crop_frame(pixels, frame)
    assert cropped.shape[:2] == (frame[2], frame[3])
    if frame[0] < 0:
        assert cropped[: -frame[0]].max() == 0


def test_blank_image_means_the_whole_image():
    assert head_frame(np.zeros((64, 64, 3), np.uint8)) == (0, 0, 64, 64)


def test_full_bleed_image_is_kept_whole_with_the_margin():
    top, left, height, width = head_frame(np.full((64, 48, 3), 200, np.uint8))
    assert top < 0 and left < 0 and top + height > 64 and left + width > 48


def test_unknown_crop_is_refused():
    with pytest.raises(ValueError, match="unknown crop"):
        model_input(np.zeros((8, 8, 3), np.uint8), (4, 4), "brain")


def test_cache_equals_decoding_directly_and_serving(tmp_path, slot_predictors):
    root = tmp_path / "data"
    (root / "glioma").mkdir(parents=True)
    (root / "notumor").mkdir()
    Image.fromarray(_head_on_canvas(180, 240, 60, 30)).save(root / "glioma" / "a.jpg", quality=92)
    Image.fromarray(_head_on_canvas(200, 200, 10, 90)).save(root / "notumor" / "b.png")
    size = (48, 48)
    first = load_folder(root, sizes=[size], cache_dir=tmp_path / "cache", crop="head")
    cached = load_folder(root, sizes=[size], cache_dir=tmp_path / "cache", crop="head")
    assert len(list((tmp_path / "cache").iterdir())) == 1, "the second load reads the cache"
    predictor = slot_predictors["cnn"]
    assert tuple(predictor.metadata.input_size) == size and predictor.metadata.crop == "head"
    for index, relative in enumerate(cached.paths):
        direct, _ = model_input(read_image(root / relative).pixels, size, "head")
        np.testing.assert_array_equal(cached.images[size][index], direct)
        np.testing.assert_array_equal(first.images[size][index], direct)
        served = predictor.prepare([read_image(root / relative).pixels])[0]
        np.testing.assert_allclose(served, direct.astype(np.float32) / 255.0, atol=1e-6)
    uncropped = load_folder(root, sizes=[size], cache_dir=tmp_path / "cache", crop="none")
    assert not np.array_equal(uncropped.images[size], cached.images[size]), "the crop is part of the cache key"
