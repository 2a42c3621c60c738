"""Model builders, and saving and loading a model together with its metadata.

A model folder holds ``model.keras`` (no optimizer state), ``tumor_ai.json`` (the metadata:
labels, input size, preprocessing, Grad-CAM layer, training config, metrics, versions) and a
model card ``README.md``. The metadata is the contract between training and serving.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras

METADATA_FILE = "tumor_ai.json"
MODEL_FILE = "model.keras"
CARD_FILE = "README.md"


@dataclass
class ModelMetadata:
    """What serving needs to know about a trained model, written beside its weights."""

    name: str
    architecture: str
    labels: list[str]
    input_size: tuple[int, int]
    preprocessing: str
    cam_layer: str
    intended_use: str = (
        "Research and teaching: classifying single axial/coronal/sagittal brain MRI slices into the "
        "classes above and showing what the model looked at. Not a medical device; not a diagnosis."
    )
    license: str = "mit"
    training: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0})
    mri_check: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        known["input_size"] = tuple(known["input_size"])
        return cls(**known)

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        return cls.from_dict(json.loads(Path(path).read_text()))


def library_versions() -> dict[str, str]:
    """Pinned versions recorded with a model, as MONAI bundles do."""
    import numpy
    import tensorflow

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": tensorflow.__version__,
        "numpy": numpy.__version__,
        "keras_backend": keras.backend.backend(),
    }


def build_cnn(
    labels: list[str],
    input_size: tuple[int, int] = (256, 256),
    filters: tuple[int, ...] = (16, 32, 64, 128, 256),
    dense_units: int = 128,
    dropout: float = 0.4,
) -> tuple[keras.Model, ModelMetadata]:
    """A small CNN trained from scratch: conv blocks (conv, batch-norm, ReLU, max-pool), dense head.

    The last block's ReLU output (16x16 at 256 px) is the Grad-CAM layer: late enough to be
    class-specific, fine enough to localise.
    """
    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = inputs
    for index, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{index}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{index}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{index}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{index}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout1")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout2")(x)
    outputs = keras.layers.Dense(len(labels), activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tumor_cnn")
    metadata = ModelMetadata(
        name="cnn",
        architecture="cnn",
        labels=list(labels),
        input_size=tuple(input_size),
        preprocessing="rescale_unit",
        cam_layer=f"block{len(filters)}_relu",
    )
    return model, metadata


def build_vgg16(
    labels: list[str],
    input_size: tuple[int, int] = (160, 160),
    weights: str | None = "imagenet",
    dense_units: int = 256,
    dropout: float = 0.5,
) -> tuple[keras.Model, ModelMetadata]:
    """VGG16 convolution base (ImageNet) with a small dense head, as one flat functional graph.

    ``weights`` is ``"imagenet"`` (downloads), a path to the no-top weights file (offline), or
    ``None``. The base is built on our own ``Input`` so its layers sit in the same graph as the
    head, and Grad-CAM can read ``block5_conv3`` directly.
    """
    inputs = keras.Input(shape=(*input_size, 3), name="image")
    base = keras.applications.VGG16(include_top=False, weights=None, input_tensor=inputs)
    if weights == "imagenet":
        base = keras.applications.VGG16(include_top=False, weights="imagenet", input_tensor=inputs)
    elif weights:
        base.load_weights(weights)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    x = keras.layers.Dropout(dropout, name="head_dropout1")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout2")(x)
    outputs = keras.layers.Dense(len(labels), activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tumor_vgg16")
    metadata = ModelMetadata(
        name="vgg16",
        architecture="vgg16",
        labels=list(labels),
        input_size=tuple(input_size),
        preprocessing="vgg16",
        cam_layer="block5_conv3",
        license="cc-by-4.0",
    )
    return model, metadata


BUILDERS = {"cnn": build_cnn, "vgg16": build_vgg16}


def save_model_folder(model: keras.Model, metadata: ModelMetadata, folder: str | Path) -> Path:
    """Write ``model.keras`` (no optimizer state) and ``tumor_ai.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE, include_optimizer=False)
    (folder / METADATA_FILE).write_text(metadata.to_json())
    return folder
