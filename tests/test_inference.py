"""Preprocessing per image mode and size, probabilities, CAM, overlay, batch rows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tumor_ai.core.imaging import read_image
from tumor_ai.core.inference import Predictor
from tumor_ai.core.preprocessing import normalize, resize


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (300, 200), 90),
        Image.new("RGB", (64, 64), (10, 20, 30)),
        Image.new("RGBA", (80, 80), (200, 200, 200, 128)),
        Image.new("P", (50, 70), 3),
        Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16),
        Image.new("CMYK", (40, 40), (0, 0, 0, 100)),
    ],
    ids=["L", "RGB", "RGBA", "P", "I;16", "CMYK"],
)
def test_every_mode_becomes_model_input(image, slot_predictors):
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"
    loaded = read_image(_encoded(image, fmt), name=f"x.{fmt.lower()}")
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == (image.height, image.width, 3)
    predictor = slot_predictors["cnn"]
    batch = predictor.prepare([loaded.pixels])
    assert batch.shape == (1, 48, 48, 3) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_sixteen_bit_uses_full_range():
    image = Image.fromarray(np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40)
    pixels = read_image(_encoded(image)).pixels
    assert pixels.min() == 0 and pixels.max() == 255


def test_vgg16_preprocessing_is_caffe_bgr():
    batch = np.zeros((1, 2, 2, 3), np.float32)
    batch[..., 0] = 255  # pure red
    out = normalize(batch, "vgg16")
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 255 - 123.68], atol=1e-3)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        normalize(batch, "nope")


def test_resize_to_model_input():
    assert resize(np.zeros((512, 300, 3), np.uint8), (48, 48)).shape == (48, 48, 3)


def test_batch_and_single_agree(slot_predictors, example_paths):
    predictor = slot_predictors["vgg16"]
    images = [read_image(path).pixels for path in example_paths.values()]
    together = predictor.predict(images)
    alone = [predictor.predict_one(image)[0] for image in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5)
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-4)


def test_predict_cli_writes_the_batch_table(slot_models, example_paths, tmp_path, capsys):
    from tumor_ai.app.predict import main

    (tmp_path / "in").mkdir()
    for label in ("glioma", "notumor"):
        (tmp_path / "in" / f"{label}.jpg").write_bytes(example_paths[label].read_bytes())
    (tmp_path / "in" / "readme.txt.jpg").write_text("not an image")
    out = tmp_path / "results.csv"
    main(
        [
            str(tmp_path / "in"),
            "--cnn",
            str(slot_models["cnn"]),
            "--vgg16",
            str(slot_models["vgg16"]),
            "--out",
            str(out),
            "--allow-no-mri-check",
        ]
    )
    lines = out.read_text().splitlines()
    assert lines[0].startswith("file,cnn class,cnn confidence,cnn plausible at 95%,cnn p(glioma),")
    assert len(lines) == 4 and "it is a text file" in out.read_text()
    assert "3 files, 1 refused" in capsys.readouterr().err


def test_test_time_flip_averages_the_logits_of_the_mirror_image(slot_models, example_paths):
    from tumor_ai.model.folder import load_model

    model, metadata = load_model(slot_models["cnn"])
    plain = Predictor(model, metadata)
    metadata_flip = load_model(slot_models["cnn"])[1]
    metadata_flip.test_time_flip = True
    flipping = Predictor(model, metadata_flip)
    batch = plain.prepare([read_image(path).pixels for path in example_paths.values()])
    straight = plain.run(batch)
    mirrored = plain.run(np.ascontiguousarray(batch[:, :, ::-1]))
    averaged = flipping.run(batch)
    assert not np.allclose(straight["logits"], mirrored["logits"], atol=1e-4), "the mirror image must change the logits"
    np.testing.assert_allclose(averaged["logits"], (straight["logits"] + mirrored["logits"]) / 2, atol=1e-5)
    # Grad-CAM is the slice's own, for the class the averaged logits chose (re-aimed where the mirror changed it).
    for index, top in enumerate(np.argmax(averaged["logits"], axis=1)):
        own = plain.run(batch[index : index + 1], class_index=int(top))["cam"][0]
        np.testing.assert_allclose(averaged["cam"][index], own, atol=1e-5)


def test_concurrent_requests_share_a_pass_and_get_their_own_results(slot_models, example_paths):
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor.from_source(slot_models["vgg16"], precision="float32")
    images = [read_image(path).pixels for path in example_paths.values()] * 2
    alone = [predictor.predict_one(image)[0] for image in images]
    predictor.share_passes(max_batch=8, window=0.2)
    with ThreadPoolExecutor(8) as pool:
        together = [prediction for prediction, _ in pool.map(predictor.predict_one, images)]
    assert max(predictor.batcher.batch_sizes) > 1, "concurrent requests ran in one pass"
    for one, shared in zip(alone, together):
        assert one.label == shared.label and one.is_mri == shared.is_mri
        np.testing.assert_allclose(list(one.probabilities.values()), list(shared.probabilities.values()), atol=1e-5)
        np.testing.assert_allclose(one.cam, shared.cam, atol=1e-4)
