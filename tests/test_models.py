"""Builders (shapes, the CAM layer in one flat graph, gradients reach it) and save/load."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.networks import build_cnn, build_vgg16
from tumor_ai.model.folder import METADATA_FILE, MODEL_FILE, ModelSourceError, load_model, parse_hub_source, save_model_folder

LABELS = ["a", "b", "c"]


def _cam_gradient(model, cam_layer: str, size: tuple[int, int]) -> np.ndarray:
    graph = keras.Model(model.inputs, [model.get_layer(cam_layer).output, model.output])
    with tf.GradientTape() as tape:
        features, probabilities = graph(tf.random.uniform((2, *size, 3)), training=False)
        score = tf.reduce_sum(probabilities[:, 0])
    return tape.gradient(score, features).numpy()


def test_cnn_builder_shapes_and_cam_layer():
    model, metadata = build_cnn(LABELS, input_size=(64, 64), filters=(4, 8, 8))
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 3)
    assert metadata.cam_layer == "block3_out"
    assert metadata.labels == LABELS and metadata.preprocessing == "rescale_unit" and metadata.crop == "head"
    assert all(not isinstance(layer, keras.Model) for layer in model.layers), "graph must be flat"
    gradient = _cam_gradient(model, metadata.cam_layer, (64, 64))
    assert gradient.shape == (2, 4, 4, 8) and np.abs(gradient).sum() > 0  # stride-2 stem, pool, two pools


def test_cnn_blocks_are_residual():
    model, _ = build_cnn(LABELS, input_size=(64, 64), filters=(4, 8))
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["block1_add", "block2_add"]
    assert isinstance(model.get_layer("block2_proj"), keras.layers.Conv2D), "width change needs a projection shortcut"


def test_mixed_precision_model_is_saved_in_float32(tmp_path):
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model, metadata = build_cnn(LABELS, input_size=(32, 32), filters=(4, 4))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32", "the softmax stays float32"
    folder = save_model_folder(model, metadata, tmp_path / "m")
    loaded, _ = load_model(folder)
    assert {layer.compute_dtype for layer in loaded.layers if layer.weights} == {"float32"}
    batch = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=0.03)


def test_cnn_default_is_256_input():
    model, metadata = build_cnn(["x", "y", "z", "w"])
    assert model.input_shape == (None, 256, 256, 3) and metadata.input_size == (256, 256)


def test_vgg16_builder_is_flat_and_cam_layer_gets_gradients():
    model, metadata = build_vgg16(LABELS, input_size=(32, 32), weights=None)
    names = [layer.name for layer in model.layers]
    assert "block5_conv3" in names and metadata.cam_layer == "block5_conv3"
    assert all(not isinstance(layer, keras.Model) for layer in model.layers), "VGG16 base must not be nested"
    assert metadata.preprocessing == "vgg16" and metadata.license == "cc-by-4.0"
    gradient = _cam_gradient(model, "block5_conv3", (32, 32))
    assert gradient.shape == (2, 2, 2, 512) and np.abs(gradient).sum() > 0


def test_vgg16_loads_backbone_weights_from_a_path(tmp_path):
    reference, _ = build_vgg16(LABELS, input_size=(32, 32), weights=None)
    base = keras.Model(reference.input, reference.get_layer("block5_pool").output)
    path = tmp_path / "notop.weights.h5"
    base.save_weights(path)
    model, _ = build_vgg16(LABELS, input_size=(32, 32), weights=str(path))
    np.testing.assert_array_equal(
        model.get_layer("block1_conv1").get_weights()[0], reference.get_layer("block1_conv1").get_weights()[0]
    )


def test_save_and_load_round_trip_without_optimizer(tmp_path):
    model, metadata = build_cnn(LABELS, input_size=(32, 32), filters=(4, 4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((4, 32, 32, 3)), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    folder = save_model_folder(model, metadata, tmp_path / "m")
    with zipfile.ZipFile(folder / MODEL_FILE) as archive:
        import h5py

        with archive.open("model.weights.h5") as handle, h5py.File(handle) as weights:
            assert "optimizer" not in weights, "optimizer state must not be saved"
    loaded, loaded_metadata = load_model(folder)
    batch = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    assert loaded_metadata == metadata
    assert json.loads((folder / METADATA_FILE).read_text())["cam_layer"] == "block2_out"
    assert load_model(folder / MODEL_FILE)[1] == metadata


def test_bad_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(ModelSourceError, match="neither"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelSourceError, match="hf://USER/REPO"):
        parse_hub_source("hf://just-a-name")
    assert parse_hub_source("hf://me/model@v1") == ("me/model", "v1")
    assert parse_hub_source("hf://me/model") == ("me/model", None)


def test_metadata_refuses_a_newer_schema_and_unknown_keys():
    from tumor_ai.model.metadata import SCHEMA_VERSION, ModelMetadata

    _, metadata = build_cnn(LABELS, input_size=(32, 32), filters=(4,))
    written = json.loads(metadata.to_json())
    assert written["schema_version"] == SCHEMA_VERSION and written["logits_layer"] == "predictions"
    assert written["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "a", "1": "b", "2": "c"}
    assert ModelMetadata.from_dict(written) == metadata
    with pytest.raises(ModelSourceError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        ModelMetadata.from_dict({**written, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ModelSourceError, match="keys this tumor-ai does not know: temperature_v2"):
        ModelMetadata.from_dict({**written, "temperature_v2": 0.9})


def test_schema_1_metadata_loads_with_todays_defaults():
    from tumor_ai.model.metadata import SCHEMA_VERSION, ModelMetadata

    old = {"name": "cnn", "architecture": "cnn", "labels": LABELS, "input_size": [64, 64], "preprocessing": "rescale_unit"}
    loaded = ModelMetadata.from_dict({**old, "cam_layer": "block3_out"})
    assert (loaded.logits_layer, loaded.embedding_layer, loaded.schema_version) == ("predictions", "avg_pool", SCHEMA_VERSION)


@pytest.mark.parametrize("name", ["cnn", "vgg16"])
def test_a_schema_5_metadata_file_reads_typed_and_writes_back_the_same(name):
    """Every block is typed, and a schema 5 file round-trips: only the version and the output folder (schema 6) change.
    Both are the files the models shipped with before schema 6 (kept in tests/data)."""
    from conftest import ROOT

    from tumor_ai.model.metadata import SCHEMA_VERSION, ModelMetadata

    path = ROOT / "tests" / "data" / f"schema5_{name}_tumor_ai.json"
    shipped = json.loads(path.read_text())
    assert shipped["schema_version"] == 5
    metadata = ModelMetadata.from_dict(shipped)
    training, found, sets = metadata.training, metadata.localisation, metadata.conformal
    assert training.out == f"models/{name}", "before schema 6 the folder is read from the command's --out"
    assert training.command == shipped["training"]["command"] and training.seconds == shipped["training"]["seconds"]
    assert training.test_time_flip.with_flip.accuracy == shipped["training"]["test_time_flip"]["with"]["accuracy"]
    raw_found, raw_sets = shipped["localisation"], shipped["conformal"]
    assert found.pointing_game.per_class["glioma"].value == raw_found["pointing_game"]["per_class"]["glioma"]["value"]
    assert found.erased.tumour_kept.value == raw_found["erased"]["tumour_kept"]["value"]
    assert sets.cross_fit["0.95"].per_class["glioma"].coverage == raw_sets["cross_fit"]["0.95"]["per_class"]["glioma"]["coverage"]
    written = json.loads(metadata.to_json())
    expected = {**shipped, "schema_version": SCHEMA_VERSION, "training": {**shipped["training"], "out": f"models/{name}"}}
    assert written == expected
    assert json.loads(ModelMetadata.from_dict(written).to_json()) == written, "today's schema round-trips exactly"


def test_a_typed_block_refuses_an_unknown_key_at_any_depth():
    from conftest import ROOT

    from tumor_ai.model.metadata import ModelMetadata

    shipped = json.loads((ROOT / "models" / "cnn" / METADATA_FILE).read_text())
    training = {**shipped["training"], "throughput": {**shipped["training"]["throughput"], "watts": 40}}
    with pytest.raises(ModelSourceError, match="keys this tumor-ai does not know: watts"):
        ModelMetadata.from_dict({**shipped, "training": training})
    pointing = {**shipped["localisation"]["pointing_game"], "median": 0.5}
    with pytest.raises(ModelSourceError, match="keys this tumor-ai does not know: median"):
        ModelMetadata.from_dict({**shipped, "localisation": {**shipped["localisation"], "pointing_game": pointing}})
    with pytest.raises(ModelSourceError, match="keys this tumor-ai does not know: seed"):
        ModelMetadata.from_dict({**shipped, "conformal": {**shipped["conformal"], "seed": 0}})
    incomplete = {key: value for key, value in shipped["localisation"].items() if key != "erased"}
    with pytest.raises(ModelSourceError, match="LocalisationRecord block without erased$"):
        ModelMetadata.from_dict({**shipped, "localisation": incomplete})


def test_serving_reads_the_layers_the_metadata_names():
    """A model whose layers have other names serves once its metadata names them; nothing assumes a name."""
    from tumor_ai.core.inference import Predictor
    from tumor_ai.model.metadata import ModelMetadata

    inputs = keras.Input((32, 32, 3), name="image")
    features = keras.layers.Conv2D(4, 3, activation="relu", name="last_conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(features)
    outputs = keras.layers.Dense(3, activation="softmax", name="classifier")(pooled)
    model = keras.Model(inputs, outputs)
    metadata = ModelMetadata(
        "odd", "cnn", LABELS, (32, 32), "rescale_unit", "last_conv", logits_layer="classifier", embedding_layer="pooled"
    )
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    predictor = Predictor(model, metadata)
    outputs = predictor.run(predictor.prepare(list(images)))
    np.testing.assert_allclose(outputs["probabilities"], model.predict(images / 255.0, verbose=0), atol=1e-5)
    assert outputs["embedding"].shape == (2, 4) and outputs["cam"].shape == (2, 30, 30)
    with pytest.raises(ValueError, match="predictions"):
        Predictor(model, ModelMetadata("odd", "cnn", LABELS, (32, 32), "rescale_unit", "last_conv"))


def test_a_schema_6_file_reads_and_writes_back_the_same_but_its_version():
    """The CNN as it shipped before schema 7 (kept in tests/data): no reliability block and no studies, nothing else
    changes."""
    from conftest import ROOT

    from tumor_ai.model.metadata import SCHEMA_VERSION, ModelMetadata

    shipped = json.loads((ROOT / "tests" / "data" / "schema6_cnn_tumor_ai.json").read_text())
    assert shipped["schema_version"] == 6 and "reliability" not in shipped["calibration"]
    metadata = ModelMetadata.from_dict(shipped)
    assert metadata.calibration.reliability is None and metadata.calibration.ece_after == shipped["calibration"]["ece_after"]
    assert json.loads(metadata.to_json()) == {**shipped, "schema_version": SCHEMA_VERSION}


def test_the_shipped_cnn_is_schema_8_and_round_trips_exactly():
    from conftest import ROOT

    from tumor_ai.model.metadata import RELIABILITY_FILE, SCHEMA_VERSION, ModelMetadata

    shipped = json.loads((ROOT / "models" / "cnn" / METADATA_FILE).read_text())
    assert shipped["schema_version"] == SCHEMA_VERSION == 8
    metadata = ModelMetadata.from_dict(shipped)
    assert metadata.training.started_from.of == "models/cnn-v1" and metadata.training.partial.validation["slices"] == 30
    reliability, calibration = metadata.calibration.reliability, metadata.calibration
    assert (reliability.before.ece, reliability.after.ece) == (calibration.ece_before, calibration.ece_after)
    assert sum(reliability.before.counts) == sum(reliability.after.counts) == metadata.metrics.validation.images
    assert (ROOT / "models" / "cnn" / RELIABILITY_FILE).is_file(), "the diagram of those bins is beside the metadata"
    assert set(metadata.studies) == {"cnn-recipe", "cnn-finetune-recipe"}, "the studies of its recipe, typed"
    assert (
        metadata.studies["cnn-finetune-recipe"].score["pointing_game"]
        == shipped["studies"]["cnn-finetune-recipe"]["score"]["pointing_game"]
    )
    assert json.loads(metadata.to_json()) == shipped
