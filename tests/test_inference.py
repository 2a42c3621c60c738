"""Preprocessing per image mode and size, probabilities, CAM, overlay, batch rows."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tumor_ai.core.batch import columns, decode, iter_inputs, result_rows, rows_to_csv, run_batch
from tumor_ai.core.explain import focus_region, heatmap, jet, overlay, reading
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


def test_probabilities_and_cam_match_an_independent_grad_cam(slot_predictors, example_paths):
    """The batched, fused forward-and-CAM function against the keras-io recipe, one image at a time."""
    import keras
    import tensorflow as tf

    predictor = slot_predictors["cnn"]
    images = [read_image(path).pixels for path in example_paths.values()]
    batch = predictor.prepare(images)
    outputs = predictor.run(batch)
    model, metadata = predictor.model, predictor.metadata
    dense = model.get_layer(metadata.logits_layer)
    graph = keras.Model(model.inputs, [model.get_layer(metadata.cam_layer).output, dense.input, model.output])
    for index in range(len(images)):
        with tf.GradientTape() as tape:
            features, penultimate, probabilities = graph(batch[index : index + 1], training=False)
            logits = penultimate @ dense.kernel + dense.bias
            score = logits[:, int(tf.argmax(logits[0]))]
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(0, 1, 2))  # keras-io: pooled gradients
        heat = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1))
        heat = (heat / (tf.reduce_max(heat) + 1e-8)).numpy()
        np.testing.assert_allclose(outputs["probabilities"][index], probabilities[0].numpy(), atol=1e-5)  # T = 1 here
        np.testing.assert_allclose(outputs["cam"][index], heat, atol=1e-4)
    assert outputs["cam"].shape == (4, 6, 6)  # block2_out of a 48 px input: stride-2 stem, pool, one pool between blocks


def test_batch_and_single_agree(slot_predictors, example_paths):
    predictor = slot_predictors["vgg16"]
    images = [read_image(path).pixels for path in example_paths.values()]
    together = predictor.predict(images)
    alone = [predictor.predict_one(image)[0] for image in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5)
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-4)


def test_overlay_and_heatmap_keep_input_resolution():
    pixels = np.full((301, 199, 3), 128, np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[1, 6] = 1.0
    blended = overlay(pixels, cam, opacity=0.5)
    assert blended.shape == pixels.shape and blended.dtype == np.uint8
    assert heatmap(cam, (301, 199)).shape == (301, 199, 3)
    np.testing.assert_array_equal(overlay(pixels, cam, opacity=0.0), pixels)
    assert not np.array_equal(blended, pixels)
    assert "upper right" in focus_region(cam)


def test_jet_runs_blue_to_red():
    low, high = jet(np.array([0.0, 1.0]))
    assert low[2] > low[0] and high[0] > high[2]


def test_reading_is_plain_and_says_not_a_diagnosis():
    text = reading("glioma", 0.93, np.eye(4), "The cnn model")
    assert "Glioma" in text and "93%" in text and "not a medical device" in text
    empty = reading("glioma", 0.48, np.zeros((4, 4)), "The vgg16 model")
    assert "The map is empty" in empty and "came mostly from" not in empty, "an empty map is not said to point anywhere"


def test_batch_rows_from_files_and_zip(tmp_path, slot_predictors, example_paths):
    archive = tmp_path / "slices.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(example_paths["glioma"], "inner/glioma.jpg")
        handle.writestr("notes.txt", "ignored: not an image suffix")
        handle.writestr("broken.png", b"not a png")
    items = [decode(name, source) for name, source in iter_inputs([example_paths["pituitary"], archive])]
    assert [item.name for item in items] == ["pituitary.jpg", "slices.zip/inner/glioma.jpg", "slices.zip/broken.png"]
    assert items[2].error and "not an image" in items[2].error
    results = run_batch(slot_predictors, items, batch_size=2)
    rows = result_rows(items, results)
    assert rows[0]["agree"] in ("yes", "no") and rows[2]["cnn class"] == "error"
    assert isinstance(rows[0]["cnn confidence"], float)  # full precision; the app rounds only what it shows
    shares = ",".join(f"p({label})" for label in slot_predictors["cnn"].labels)
    header = rows_to_csv(rows).splitlines()[0]
    each = "{0} class,{0} confidence,{0} plausible at 95%,{0} " + shares.replace(",", ",{0} ")
    assert header == "file," + each.format("cnn") + "," + each.format("vgg16") + ",agree,note"
    assert header == ",".join(columns(["cnn", "vgg16"], slot_predictors["cnn"].labels)), "the CLI's header, in order"


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


def test_grad_cam_of_a_chosen_class(slot_predictors, example_paths):
    predictor = slot_predictors["cnn"]
    batch = predictor.prepare([read_image(example_paths["glioma"]).pixels])
    top = int(np.argmax(predictor.run(batch)["logits"][0]))
    other = (top + 1) % len(predictor.labels)
    default, chosen_top, chosen_other = (predictor.run(batch, class_index=index)["cam"][0] for index in (None, top, other))
    np.testing.assert_allclose(default, chosen_top, atol=1e-6)
    assert not np.allclose(chosen_top, chosen_other, atol=1e-3), "another class must give another map"
    assert chosen_other.min() >= 0 and chosen_other.max() <= 1 + 1e-6


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
