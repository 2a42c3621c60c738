"""Model builders, and saving and loading a model together with its metadata.

A model folder holds ``model.keras`` (no optimizer state), ``tumor_ai.json`` (the metadata:
labels, input size, preprocessing, the layers serving reads, training config, metrics, versions)
and a model card ``README.md``. The metadata is the whole contract between training and serving:
nothing that serves a model may assume a fact about it that the metadata does not state.
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
SCHEMA_VERSION = 5  # 2: layer names, title and description, network_data_format; 3: cam_method, localisation; 4: conformal;
# 5: other_collections
DERIVED_KEYS = {"network_data_format"}  # written for readers, recomputed on load


@dataclass
class Calibration:
    """The temperature that calibrates the softmax (``tumor_ai.calibration``), and the calibration error it left."""

    temperature: float = 1.0
    ece_before: float | None = None
    ece_after: float | None = None
    fitted_on: str = ""


@dataclass
class DatasetRecord:
    """What a model was trained on and how it was split (``training.train``)."""

    name: str = ""
    license: str = ""
    root: str = ""
    fingerprint_sha256: str = ""
    images: int = 0
    skipped: int = 0
    duplicate_groups: int = 0
    split: str = ""
    validation_fraction: float = 0.0
    seed: int = 0
    train_images: int = 0
    validation_images: int = 0


@dataclass
class Scores:
    """A model's figures on held-out images."""

    images: int
    accuracy: float
    macro_f1: float
    ece: float
    nll: float


@dataclass
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Metrics:
    """The validation split's figures, overall and per class (labels in the metadata's order)."""

    validation: Scores
    validation_per_class: dict[str, ClassScores] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        per_class = {label: ClassScores(**row) for label, row in data.get("validation_per_class", {}).items()}
        return cls(Scores(**data["validation"]), per_class)


@dataclass
class FamilyRates:
    """How the check does on one family of pictures that are not brain MRI."""

    pictures: int
    rejected: float
    rejected_source_left_out: float  # by a fit that never saw the family's source


@dataclass
class MriCheckRecord:
    """How the not-an-MRI check was fitted and how it does (``training.fit_mri_check``; the bounds themselves
    are ``tumor_ai.mri_check.BOUNDS``, fitted values in ``mri_check.npz``)."""

    method: str = ""
    bounds: dict[str, float] = field(default_factory=dict)
    command: str = ""
    train_pass_rate: float | None = None
    validation_pass_rate: float = 0.0
    validation_images: int = 0
    validation_refused: list[str] = field(default_factory=list)
    non_mri_images: int = 0
    non_mri_rejection_rate: float = 0.0
    medical_non_mri_images: int = 0
    medical_non_mri_rejection_rate: float | None = None
    families: dict[str, FamilyRates] = field(default_factory=dict)
    non_mri_passed: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MriCheckRecord:
        families = {name: FamilyRates(**rates) for name, rates in (data.get("families") or {}).items()}
        return cls(**{**data, "families": families})


@dataclass
class OtherCollectionRecord:
    """Tumour slices of unknown type from another collection, scored as served (``training.evaluate --write``).

    The classes of the training data are confounded with their source collections; these slices
    (e.g. Br35H's tumours, from the collection the no-tumour class came from) show whether the model
    calls a tumour a tumour wherever the slice came from.
    """

    data: str = ""  # the folder's name
    command: str = ""
    images: int = 0
    slices: int = 0  # distinct slices (one file each)
    sensitivity: float = 0.0  # share of distinct slices called any tumour class
    sensitivity_per_image: float = 0.0
    called: dict[str, float] = field(default_factory=dict)  # per distinct slice, share called each class
    mri_check_pass_rate: float | None = None  # share of the images the not-an-MRI check lets through
    seen_in_training: str = "none"  # "none", or which share of the folder the model trained on


def refuse_unknown_keys(data: dict[str, Any], known: set[str]) -> None:
    """A key this tumor-ai does not know (a newer writer's) is refused in one sentence, never half-read."""
    unknown = set(data) - known
    if unknown:
        raise ModelSourceError(f"the model's metadata has keys this tumor-ai does not know: {', '.join(sorted(unknown))}")


def _typed_block(kind: type, data: Any) -> Any:
    """A JSON block as its dataclass (an empty block is ``None``); keys the dataclass does not know are refused."""
    if not data:
        return None
    if not isinstance(data, dict):
        raise ModelSourceError(f"the model's metadata has a {type(data).__name__} where a block of figures belongs")
    refuse_unknown_keys(data, set(kind.__dataclass_fields__))
    return kind.from_dict(data) if hasattr(kind, "from_dict") else kind(**data)


@dataclass
class ModelMetadata:
    """What serving needs to know about a trained model, written beside its weights."""

    name: str
    architecture: str
    labels: list[str]
    input_size: tuple[int, int]
    preprocessing: str
    cam_layer: str  # the convolutional layer the class-activation map reads
    logits_layer: str = "predictions"  # the dense layer whose input and weights give the logits
    embedding_layer: str = "avg_pool"  # pooled features, for the not-an-MRI check
    title: str = ""  # e.g. "VGG16 transfer model", for cards and the app
    description: str = ""  # what the architecture is, in a sentence or two
    cam_method: str = "grad_cam"  # how the map weighs that layer (tumor_ai.cam), chosen by tumor-ai localise
    schema_version: int = SCHEMA_VERSION
    crop: str = "none"  # "head": crop to the head's bounding square first (tumor_ai.preprocessing)
    test_time_flip: bool = False  # average the logits of the image and its mirror image
    intended_use: str = (
        "Research and teaching: classifying single axial/coronal/sagittal brain MRI slices into the "
        "classes above and showing what the model looked at. Not a medical device; not a diagnosis."
    )
    license: str = "mit"
    training: dict[str, Any] = field(default_factory=dict)  # the recipe, command, timings (training.train)
    dataset: DatasetRecord | None = None
    metrics: Metrics | None = None  # None: no held-out figures (a model trained without a split)
    calibration: Calibration = field(default_factory=Calibration)
    mri_check: MriCheckRecord | None = None
    localisation: dict[str, Any] = field(default_factory=dict)  # where the map points, measured (training.localise)
    conformal: dict[str, Any] = field(default_factory=dict)  # prediction-set thresholds (training.conformal)
    other_collections: dict[str, OtherCollectionRecord] = field(default_factory=dict)  # by folder name
    libraries: dict[str, str] = field(default_factory=dict)

    def network_data_format(self) -> dict[str, Any]:
        """Inputs and outputs in the shape of a MONAI bundle's ``network_data_format``."""
        return {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "RGB",
                    "dtype": "uint8",
                    "value_range": [0, 255],
                    "num_channels": 3,
                    "spatial_shape": list(self.input_size),
                    "crop": self.crop,
                    "preprocessing": self.preprocessing,
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "num_channels": len(self.labels),
                    "channel_def": {str(index): label for index, label in enumerate(self.labels)},
                    "calibration": "softmax(logits / calibration.temperature)",
                }
            },
        }

    def to_json(self) -> str:
        """The file's JSON; an absent block is written ``{}``, as schema 4 always has."""
        data = {key: {} if value is None and key in TYPED_BLOCKS else value for key, value in asdict(self).items()}
        return json.dumps({**data, "network_data_format": self.network_data_format()}, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Read metadata of this schema or an older one; a newer schema or unknown keys are refused in one sentence."""
        version = int(data.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise ModelSourceError(
                f"this model's metadata is schema version {version}, newer than the {SCHEMA_VERSION} this tumor-ai "
                "reads: upgrade tumor-ai to serve it"
            )
        refuse_unknown_keys(data, set(cls.__dataclass_fields__) | DERIVED_KEYS)
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        known["input_size"] = tuple(known["input_size"])
        for key, kind in TYPED_BLOCKS.items():
            if key in known:
                known[key] = _typed_block(kind, known[key])
        known["calibration"] = known.get("calibration") or Calibration()
        blocks = known.get("other_collections") or {}
        if not isinstance(blocks, dict):
            raise ModelSourceError("the model's metadata has other_collections that is not a block of figures by folder")
        known["other_collections"] = {name: _typed_block(OtherCollectionRecord, block) for name, block in blocks.items()}
        known["schema_version"] = SCHEMA_VERSION  # older files load with today's defaults for the new keys
        return cls(**known)

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        return cls.from_dict(json.loads(Path(path).read_text()))


TYPED_BLOCKS: dict[str, type] = {
    "dataset": DatasetRecord,
    "metrics": Metrics,
    "calibration": Calibration,
    "mri_check": MriCheckRecord,
}


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
    normalisation (``tumor_ai.preprocessing``), which also sets the input's channels.
    """
    from tumor_ai.preprocessing import channels

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


class ModelSourceError(ValueError):
    """A model source that cannot be resolved or loaded, worded for the person who named it."""


def without_optimizer(model: keras.Model) -> keras.Model:
    """An uncompiled float32 copy with the same layers, names and weights.

    Nothing of the optimizer is saved, and a model trained in mixed precision is served in
    float32 (its variables already are), so serving never depends on the training CPU.
    """
    config = model.get_config()
    for layer in config.get("layers", []):
        dtype = layer.get("config", {}).get("dtype")
        if isinstance(dtype, dict) and str(dtype.get("config", {}).get("name", "")).startswith("mixed_"):
            layer["config"]["dtype"] = "float32"
    clean = keras.Model.from_config(config)
    clean.set_weights(model.get_weights())
    return clean


def save_model_folder(model: keras.Model, metadata: ModelMetadata, folder: str | Path) -> Path:
    """Write ``model.keras`` (no optimizer state) and ``tumor_ai.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    without_optimizer(model).save(folder / MODEL_FILE)
    (folder / METADATA_FILE).write_text(metadata.to_json())
    return folder


def parse_hub_source(source: str) -> tuple[str, str | None]:
    """``hf://user/repo[@revision]`` to ``(repo_id, revision)``."""
    path = source[len("hf://") :]
    repo_id, _, revision = path.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ModelSourceError(f"'{source}' is not a Hub model source; expected hf://USER/REPO or hf://USER/REPO@REVISION")
    return repo_id, revision or None


def resolve_source(source: str | Path) -> Path:
    """A local folder that holds the model: a folder as is, a ``.keras`` file's folder, or a Hub download.

    Hub downloads go through ``huggingface_hub.snapshot_download``, so they are cached and
    ``HF_HUB_OFFLINE=1`` serves them from the cache.
    """
    text = str(source)
    if text.startswith("hf://"):
        from huggingface_hub import snapshot_download

        repo_id, revision = parse_hub_source(text)
        return Path(snapshot_download(repo_id=repo_id, revision=revision, library_name="tumor-ai"))
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".keras":
        return path.parent
    if path.is_dir():
        return path
    raise ModelSourceError(f"model source '{text}' is neither a model folder, a .keras file nor hf://USER/REPO")


def load_model(source: str | Path) -> tuple[keras.Model, ModelMetadata]:
    """Load a model and its metadata from a folder, a ``.keras`` file or ``hf://USER/REPO[@rev]``.

    A folder holds either ``model.keras`` or the Hub layout that ``keras.saving.save_model(model,
    "hf://...")`` writes (``config.json``, ``model.weights.h5``); ``tumor_ai.json`` sits beside.
    """
    folder = resolve_source(source)
    text = str(source)
    model_path = Path(text) if text.endswith(".keras") and not text.startswith("hf://") else folder / MODEL_FILE
    if not model_path.exists():
        model_path = folder  # the unzipped Keras layout of a Hub repo
        if not (folder / "config.json").exists():
            raise ModelSourceError(f"{source}: no {MODEL_FILE} and no Keras config.json found")
    metadata_path = folder / METADATA_FILE
    if not metadata_path.exists():
        raise ModelSourceError(f"{source}: {METADATA_FILE} (labels, preprocessing, Grad-CAM layer) is missing")
    try:
        metadata = ModelMetadata.read(metadata_path)
    except (ValueError, TypeError, KeyError, OSError) as error:  # JSONDecodeError is a ValueError
        raise ModelSourceError(f"{source}: {METADATA_FILE} is damaged and cannot be read ({type(error).__name__}).") from None
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # noqa: BLE001 - a truncated zip, a broken config, missing weights: one sentence
        name = model_path.name if model_path != folder else "config.json and model.weights.h5"
        reason = type(error).__name__
        raise ModelSourceError(f"{source}: {name} is damaged or incomplete and cannot be loaded ({reason}).") from None
    return model, metadata
