"""The networks tumor-ai trains, each registered where it is defined (as timm's ``@register_model``).

``@builds("cnn")`` makes the function the builder of the architecture ``cnn`` of the registry
(``tumor_ai.model.registry``); the registry names it as ``"training.networks:build_cnn"`` so that serving,
which only reads names and titles, never imports this module or Keras layers it does not need.
"""

from __future__ import annotations

import keras

from tumor_ai.model.metadata import ModelMetadata
from tumor_ai.model.registry import builds


def classification_head(features, num_classes: int, dense_units: int, dropout: float):
    """Global average pooling, dropout, a ReLU dense layer, dropout, softmax: shared by both models.

    The metadata names ``avg_pool`` (the MRI check's features) and ``predictions`` (the logits).
    """
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = keras.layers.Dropout(dropout, name="head_dropout1")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout2")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def residual_block(x, width: int, name: str):
    """Two 3x3 conv-BN layers with a shortcut (1x1 conv-BN when the width changes), then ReLU."""
    shortcut = x
    if x.shape[-1] != width:
        shortcut = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_proj")(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


@builds("cnn")
def build_cnn(
    labels: list[str],
    input_size: tuple[int, int] = (256, 256),
    filters: tuple[int, ...] = (48, 96, 160, 256),
    stem_filters: int = 32,
    dense_units: int = 128,
    dropout: float = 0.3,
    crop: str = "head",
    preprocessing: str = "rescale_unit",
) -> tuple[keras.Model, ModelMetadata]:
    """A lean residual CNN trained from scratch, designed for accuracy per FLOP on a CPU.

    A stride-2 stem and a max-pool take 256 px to 64 px cheaply; residual blocks (conv-BN-ReLU,
    max-pool between them) widen as the maps shrink, where channels cost least; global average
    pooling and a small dense head classify. The last block's output (8x8 at 256 px) is the
    Grad-CAM layer: the most class-specific map the network has. ``preprocessing`` names the
    normalisation (``tumor_ai.core.preprocessing``), which also sets the input's channels.
    """
    from tumor_ai.core.preprocessing import channels

    inputs = keras.Input(shape=(*input_size, channels(preprocessing)), name="image")
    x = keras.layers.Conv2D(stem_filters, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(name="stem_pool")(x)
    for index, width in enumerate(filters, start=1):
        x = residual_block(x, width, f"block{index}")
        if index < len(filters):
            x = keras.layers.MaxPooling2D(name=f"block{index}_pool")(x)
    model = keras.Model(inputs, classification_head(x, len(labels), dense_units, dropout), name="tumor_cnn")
    metadata = ModelMetadata(
        name="cnn",
        architecture="cnn",
        labels=list(labels),
        input_size=tuple(input_size),
        preprocessing=preprocessing,
        cam_layer=f"block{len(filters)}_out",
        crop=crop,
        title="Custom CNN",
        description=(
            "lean residual CNN trained from scratch: a stride-2 conv stem and a max-pool, residual blocks "
            "(two 3x3 conv-batch-norm layers and a shortcut, ReLU) that widen as they shrink with max-pooling "
            "between them, global average pooling and a dense softmax head"
        ),
    )
    return model, metadata


@builds("vgg16")
def build_vgg16(
    labels: list[str],
    input_size: tuple[int, int] = (160, 160),
    weights: str | None = "imagenet",
    dense_units: int = 256,
    dropout: float = 0.3,
    preprocessing: str = "vgg16",
) -> tuple[keras.Model, ModelMetadata]:
    """VGG16 convolution base (ImageNet) with a small dense head, as one flat functional graph.

    ``weights`` is ``"imagenet"`` (downloads), a path to the no-top weights file (offline), or
    ``None``. The base is built on our own ``Input`` so its layers sit in the same graph as the
    head, and Grad-CAM can read ``block5_conv3`` directly.
    """
    inputs = keras.Input(shape=(*input_size, 3), name="image")
    base = keras.applications.VGG16(include_top=False, weights="imagenet" if weights == "imagenet" else None, input_tensor=inputs)
    if weights and weights != "imagenet":
        base.load_weights(weights)
    model = keras.Model(inputs, classification_head(base.output, len(labels), dense_units, dropout), name="tumor_vgg16")
    metadata = ModelMetadata(
        name="vgg16",
        architecture="vgg16",
        labels=list(labels),
        input_size=tuple(input_size),
        preprocessing=preprocessing,  # "vgg16" (caffe) or "vgg16_luminance": three channels either way
        cam_layer="block5_conv3",
        license="cc-by-4.0",
        title="VGG16 transfer model",
        description=(
            "VGG16 convolution base (ImageNet) + global average pooling + dense head. Blocks 1-3 keep their "
            "ImageNet weights; the head is trained first on frozen blocks 4-5, then blocks 4-5 and the head are "
            "fine-tuned together at a low rate (`training/vgg16.py`)"
        ),
    )
    return model, metadata
