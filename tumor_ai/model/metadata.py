"""A model's metadata: the typed ``tumor_ai.json`` that is the contract between training and serving.

A model folder (``tumor_ai.model.folder``) holds ``model.keras`` (no optimizer state), ``tumor_ai.json`` (the metadata:
labels, input size, preprocessing, the layers serving reads, training config, metrics, versions)
and a model card ``README.md``. The metadata is the whole contract between training and serving:
nothing that serves a model may assume a fact about it that the metadata does not state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILE = "tumor_ai.json"
MODEL_FILE = "model.keras"
CARD_FILE = "README.md"
SCHEMA_VERSION = 5  # 2: layer names, title and description, network_data_format; 3: cam_method, localisation; 4: conformal;
# 5: other_collections
DERIVED_KEYS = {"network_data_format"}  # written for readers, recomputed on load


@dataclass
class Calibration:
    """The temperature that calibrates the softmax (``tumor_ai.core.calibration``), and the calibration error it left."""

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
    are ``tumor_ai.core.mri_check.BOUNDS``, fitted values in ``mri_check.npz``)."""

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
    cam_method: str = "grad_cam"  # how the map weighs that layer (tumor_ai.core.cam), chosen by tumor-ai localise
    schema_version: int = SCHEMA_VERSION
    crop: str = "none"  # "head": crop to the head's bounding square first (tumor_ai.core.preprocessing)
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


class ModelSourceError(ValueError):
    """A model source that cannot be resolved or loaded, worded for the person who named it."""
