"""A third architecture is one registry entry and its own code: it trains, is served beside the other two, is compared.

The network, recipe and registration below stand for the one new file a contributor writes
(e.g. ``training/resnet.py``) and its ``register`` call in ``tumor_ai/architectures.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from training.recipe import Recipe, option
from tumor_ai.model import registry as architectures
from tumor_ai.model.registry import Architecture


def build_tiny(labels, input_size=(48, 48), *, crop="none", preprocessing="rescale_unit", width=4):
    """One conv layer and the shared head: small enough to train in seconds."""
    import keras

    from training.networks import classification_head
    from tumor_ai.model.metadata import ModelMetadata

    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="tiny_conv")(inputs)
    model = keras.Model(inputs, classification_head(x, len(labels), 8, 0.1), name="tiny")
    metadata = ModelMetadata(
        name="tiny",
        architecture="tiny",
        labels=list(labels),
        input_size=tuple(input_size),
        preprocessing=preprocessing,
        cam_layer="tiny_conv",
        crop=crop,
        title="Tiny test network",
        description="one strided convolution and the shared dense head",
    )
    return model, metadata


@dataclass
class TinyRecipe(Recipe):
    preprocessings = ("rescale_unit",)

    epochs: int = 2
    batch_size: int = 8
    warmup_epochs: float = 0.5
    input_size: int = 48
    crop: str = "none"
    preprocessing: str = "rescale_unit"
    early_stopping_from: int = 0
    width: int = option(4, "filters of the tiny network's one convolution")


@pytest.fixture
def tiny_architecture():
    architectures.register(
        Architecture(
            name="tiny",
            title="Tiny test network",
            build=build_tiny,
            recipe=TinyRecipe,
            train="training.cnn:train_end_to_end",
            served=False,
        )
    )
    yield architectures.get("tiny")
    architectures.unregister("tiny")


def test_registering_adds_a_flag_a_recipe_and_nothing_served_by_default(tiny_architecture, capsys, tmp_path):
    from training.train import main as train_main
    from tumor_ai.app.serve import parse_args as serve_args
    from tumor_ai.model.sources import model_sources

    with pytest.raises(SystemExit):
        train_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--model {cnn,vgg16,tiny}" in help_text and "--width WIDTH" in help_text and "tiny only, default 4" in help_text
    assert serve_args(["--tiny", "hf://u/r-tiny"]).tiny == "hf://u/r-tiny"
    (tmp_path / "cnn").mkdir(), (tmp_path / "vgg16").mkdir()
    assert list(model_sources(models=tmp_path)) == ["cnn", "vgg16"], "served only when given a source"
    with pytest.raises(SystemExit):
        train_main(["--model", "cnn", "--width", "3", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "--width: not part of the cnn recipe" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lower-case identifier"):
        architectures.register(Architecture("Res-Net", "x", build_tiny, TinyRecipe, "training.cnn:train_end_to_end"))
