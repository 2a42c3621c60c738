"""A model's metadata: the typed ``tumor_ai.json`` that is the contract between training and serving.

A model folder (``tumor_ai.model.folder``) holds ``model.keras`` (no optimizer state), ``tumor_ai.json`` (the metadata:
labels, input size, preprocessing, the layers serving reads, training config, metrics, versions)
and a model card ``README.md``. The metadata is the whole contract between training and serving:
nothing that serves a model may assume a fact about it that the metadata does not state.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

METADATA_FILE = "tumor_ai.json"
MODEL_FILE = "model.keras"
CARD_FILE = "README.md"
RELIABILITY_FILE = "reliability_diagram.png"  # the diagram of calibration.reliability, beside the metadata
STUDY_PLOT = "study_{study}.png"  # a tuning study's front (tumor-ai tune --record-in), beside the metadata
SCHEMA_VERSION = 8  # 2: layer names, title and description, network_data_format; 3: cam_method, localisation; 4: conformal;
# 5: other_collections; 6: training.out (the output folder, which older files only name in training.command);
# 7: calibration.reliability (the reliability diagram's bins; optional, so older files read as they are);
# 8: studies (tuning studies of the recipe; written only where there are some, so older files read as they are)
DERIVED_KEYS = {"network_data_format"}  # written for readers, recomputed on load
OPTIONAL_KEYS = {"studies"}  # left out of the file while empty


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


class Block:
    """A typed block of ``tumor_ai.json`` read and written key for key.

    ``from_dict`` refuses a key the block does not know (``refuse_unknown_keys``); ``to_dict`` leaves out the
    fields left ``None``, which are the keys the writer did not write, so a file reads and writes back the same.
    ``NESTED`` names the fields that are blocks, ``BY_NAME`` those that are blocks by name (by class, by level),
    and ``KEYS`` a field whose JSON key is not a Python name.
    """

    NESTED: ClassVar[dict[str, type[Block]]] = {}
    BY_NAME: ClassVar[dict[str, type[Block]]] = {}
    KEYS: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ModelSourceError(f"the model's metadata has a {type(data).__name__} where a block of figures belongs")
        names = {cls.KEYS.get(each.name, each.name): each.name for each in fields(cls)}  # type: ignore[arg-type]
        refuse_unknown_keys(data, set(names))
        values = {}
        for key, value in data.items():
            name = names[key]
            if value is not None and name in cls.NESTED:
                value = cls.NESTED[name].from_dict(value)
            elif value is not None and name in cls.BY_NAME:
                value = {each: cls.BY_NAME[name].from_dict(block) for each, block in value.items()}
            values[name] = value
        try:
            return cls(**values)
        except TypeError:
            required = {cls.KEYS.get(each.name, each.name) for each in fields(cls) if each.default is MISSING}  # type: ignore[arg-type]
            missing = ", ".join(sorted(required - set(data)))
            raise ModelSourceError(f"the model's metadata has a {cls.__name__} block without {missing}") from None

    def to_dict(self) -> dict[str, Any]:
        data = {}
        for name in (each.name for each in fields(self)):  # type: ignore[arg-type]
            value = getattr(self, name)
            if value is None:
                continue
            if name in self.BY_NAME:
                value = {each: block.to_dict() for each, block in value.items()}
            elif isinstance(value, Block):
                value = value.to_dict()
            data[self.KEYS.get(name, name)] = value
        return data


@dataclass(kw_only=True)
class Figure(Block):
    """A measure with its 95% interval (slices resampled whole), on how many images, and per class where measured."""

    value: float
    low: float
    high: float
    images: int
    per_class: dict[str, Figure] | None = None


Figure.BY_NAME = {"per_class": Figure}


@dataclass(kw_only=True)
class FlipScores(Block):
    accuracy: float
    macro_f1: float
    nll: float


@dataclass(kw_only=True)
class FlipChoice(Block):
    """Whether serving averages a slice with its mirror image, and the validation figures it was chosen on."""

    adopted: bool
    without: FlipScores
    with_flip: FlipScores
    rule: str

    NESTED: ClassVar[dict[str, type[Block]]] = {"without": FlipScores, "with_flip": FlipScores}
    KEYS: ClassVar[dict[str, str]] = {"with_flip": "with"}  # "with" is a Python keyword


@dataclass(kw_only=True)
class RefitRecord(Block):
    """A refit: the split run it repeats on every image, and how many epochs it trained for."""

    of: str
    split_run_command: str | None = None
    split_run_seconds: float | None = None
    epochs: int
    note: str = ""


@dataclass(kw_only=True)
class StartRecord(Block):
    """A fine-tune: the model folder whose weights the run started from, and how those were trained.

    Reproducing the weights takes both commands, the source's first."""

    of: str
    out: str | None = None  # where the source's own command wrote it (its --out), copied to ``of`` before the fine-tune
    command: str | None = None
    seconds: float | None = None
    held_out: str = ""  # why this run's validation images were unseen by the source too


@dataclass(kw_only=True)
class Throughput(Block):
    epochs_timed: int
    median_epoch_seconds: float
    images_per_second: float


@dataclass(kw_only=True)
class MachineRecord(Block):
    """What a run trained on, for the card's timings."""

    cpu_cores: int | None
    gpus: int = 0


@dataclass(kw_only=True)
class FeatureCache(Block):
    """The VGG16 trainer's cached block-3 features (``training.features``)."""

    layer: str
    variants: int
    counterfactual_variants: int = 0
    extraction_seconds: float
    seconds_in_this_run: float
    note: str = ""


@dataclass(kw_only=True)
class GuidanceMap(Block):
    """The map the guidance loss shaped (``training.guidance``)."""

    layer: str
    method: str


@dataclass(kw_only=True)
class PartialRecord(Block):
    """The tumour slices of unknown type a run trained with (``--partial``, ``training.partial.describe``)."""

    folder: str
    fingerprint_sha256: str = ""
    images: int = 0
    slice_groups: int = 0
    train_images: int = 0
    validation_images: int = 0
    validation_slices: int = 0
    repeat: int = 1
    images_per_epoch: int = 0
    loss: str = ""
    validation: dict[str, Any] | None = None  # held-out sensitivity, as served (training.train.validate_partial)


@dataclass(kw_only=True)
class TrainingRecord(Block):
    """How a model was trained (``training.train``): the command, its folder, the recipe's arguments and the run's
    record. A field left ``None`` is one the run did not record (older runs recorded less)."""

    command: str | None = None
    out: str | None = None  # the output folder (schema 6; older files: read from the command's --out)
    arguments: dict[str, Any] | None = None  # the recipe's fields (training.recipe), by name
    distribute: str | None = None
    precision: str | None = None
    class_weights: dict[str, float] | None = None
    epochs_run: dict[str, int] | None = None  # by stage
    chosen_epochs: int | None = None
    stage_epochs: dict[str, int] | None = None
    throughput: Throughput | None = None
    seconds: int | None = None
    machine: MachineRecord | None = None
    optimizer: str | None = None
    loss: str | None = None
    test_time_flip: FlipChoice | None = None
    refit: RefitRecord | None = None
    started_from: StartRecord | None = None  # a fine-tune's source weights
    partial: PartialRecord | None = None
    features: FeatureCache | None = None
    guidance_map: GuidanceMap | None = None

    NESTED: ClassVar[dict[str, type[Block]]] = {
        "throughput": Throughput,
        "machine": MachineRecord,
        "test_time_flip": FlipChoice,
        "refit": RefitRecord,
        "started_from": StartRecord,
        "partial": PartialRecord,
        "features": FeatureCache,
        "guidance_map": GuidanceMap,
    }


@dataclass(kw_only=True)
class FillFigures(Block):
    """A fill's tumour-erased test: the tumour class kept with the tumour erased, and with a region elsewhere erased."""

    tumour_kept: Figure
    control_kept: Figure

    NESTED: ClassVar[dict[str, type[Block]]] = {"tumour_kept": Figure, "control_kept": Figure}


@dataclass(kw_only=True)
class ErasedFigures(FillFigures):
    """The tumour-erased test (``tumor_ai.core.erase``), and the same with fills no recipe trains on."""

    tumour_probability_drop: Figure | None = None
    held_out_fills: dict[str, FillFigures] | None = None

    NESTED: ClassVar[dict[str, type[Block]]] = {**FillFigures.NESTED, "tumour_probability_drop": Figure}
    BY_NAME: ClassVar[dict[str, type[Block]]] = {"held_out_fills": FillFigures}


@dataclass(kw_only=True)
class MapScores(Block):
    """One map's figures in the comparison that chose the map served."""

    pointing_game: float
    relevance_mass: float
    border_mass: float
    deletion_auc: float
    insertion_auc: float
    cost_ms: float


@dataclass(kw_only=True)
class MapChoice(Block):
    served_before: str
    rule: str


@dataclass(kw_only=True)
class ScoreCamRecord(Block):
    """Score-CAM timed on a few slices: why it is not served."""

    layer: str
    images: int
    pointing_game: float
    median_seconds: float


@dataclass(kw_only=True)
class LocalisationRecord(Block):
    """Where the served map points against the tumour outlines, and whether the answer needs the tumour
    (``training.localise``)."""

    command: str | None = None
    subset: str | None = None
    images: int
    images_per_class: dict[str, int] | None = None
    slices: int
    method: str
    layer: str
    pointing_game: Figure
    relevance_mass: Figure
    mask_share: Figure
    border_mass: Figure
    deletion_auc: Figure
    insertion_auc: Figure
    erased: ErasedFigures
    accuracy: Figure | None = None
    comparison: dict[str, MapScores] | None = None  # by "method@layer"
    choice: MapChoice | None = None
    score_cam: ScoreCamRecord | None = None
    carried_from: str | None = None  # a refit's figures are its split run's

    NESTED: ClassVar[dict[str, type[Block]]] = {
        **{name: Figure for name in ("pointing_game", "relevance_mass", "mask_share", "border_mass")},
        **{name: Figure for name in ("deletion_auc", "insertion_auc", "accuracy")},
        "erased": ErasedFigures,
        "choice": MapChoice,
        "score_cam": ScoreCamRecord,
    }
    BY_NAME: ClassVar[dict[str, type[Block]]] = {"comparison": MapScores}


@dataclass(kw_only=True)
class SetFigures(Block):
    """Prediction sets' coverage and average size, cross-fitted, overall and per true class."""

    coverage: float
    set_size: float
    per_class: dict[str, SetFigures] | None = None


SetFigures.BY_NAME = {"per_class": SetFigures}


@dataclass(kw_only=True)
class ConformalRecord(Block):
    """The prediction sets a model serves (``tumor_ai.core.conformal``, fitted by ``training.conformal``)."""

    method: str
    thresholds: dict[str, float]  # by level, as a string ("0.95")
    served_level: float | None = None
    calibrated_on: str | None = None
    cross_fit: dict[str, SetFigures] | None = None  # by level, the method served
    compared: dict[str, dict[str, SetFigures]] | None = None  # by method, then level
    rule: str | None = None
    note: str | None = None
    command: str | None = None

    BY_NAME: ClassVar[dict[str, type[Block]]] = {"cross_fit": SetFigures}

    @classmethod
    def from_dict(cls, data: Any) -> ConformalRecord:
        record = super().from_dict(data)
        if record.compared is not None:
            record.compared = {
                name: {level: SetFigures.from_dict(figures) for level, figures in levels.items()}
                for name, levels in record.compared.items()
            }
        return record

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.compared is not None:
            data["compared"] = {
                name: {level: figures.to_dict() for level, figures in levels.items()} for name, levels in self.compared.items()
            }
        return data


@dataclass(kw_only=True)
class ReliabilityBins(Block):
    """One temperature's reliability diagram: per confidence bin, the images in it, their accuracy and mean confidence
    (``None`` for an empty bin), and the calibration error (ECE) those give."""

    ece: float
    counts: list[int]
    accuracy: list[float | None]
    confidence: list[float | None]


@dataclass(kw_only=True)
class ReliabilityRecord(Block):
    """The reliability diagram (``reliability_diagram.png`` beside the metadata) in figures: the validation split's
    images in equal-width confidence bins (the ECE's), before and after the temperature (``training.metrics``)."""

    images: int
    edges: list[float]
    before: ReliabilityBins
    after: ReliabilityBins
    command: str | None = None  # written by a later command (training.evaluate --reliability --write), not the run

    NESTED: ClassVar[dict[str, type[Block]]] = {"before": ReliabilityBins, "after": ReliabilityBins}


@dataclass
class Calibration(Block):
    """The temperature that calibrates the softmax (``tumor_ai.core.calibration``), and the calibration error it left."""

    temperature: float = 1.0
    ece_before: float | None = None
    ece_after: float | None = None
    fitted_on: str = ""
    reliability: ReliabilityRecord | None = None  # schema 7; older files and runs without a split have none

    NESTED: ClassVar[dict[str, type[Block]]] = {"reliability": ReliabilityRecord}


def _typed_block(kind: type, data: Any) -> Any:
    """A JSON block as its dataclass (an empty block is ``None``); keys the dataclass does not know are refused."""
    if not data:
        return None
    if not isinstance(data, dict):
        raise ModelSourceError(f"the model's metadata has a {type(data).__name__} where a block of figures belongs")
    if not issubclass(kind, Block):  # a Block refuses unknown keys itself, nested blocks too
        refuse_unknown_keys(data, {each.name for each in fields(kind)})
    return kind.from_dict(data) if hasattr(kind, "from_dict") else kind(**data)


@dataclass(kw_only=True)
class StudyRecord(Block):
    """A tuning study run over this model's recipe (``tumor-ai tune --record-in FOLDER``), in its report's figures.

    Why in the model's metadata: the card shows what the study found beside the model it was run for, and whether
    the model in this folder is the study's chosen recipe (``adopted``) or stayed as trained.
    """

    report: str  # the study's report folder in the repository (report.md, report.json, front.png)
    command: str  # the tumor-ai tune command that ran it
    trials: int
    minutes: float
    cpus: list[str]
    targets: dict[str, float]
    chosen: int | None  # the most accurate trial meeting the targets, else the closest to them
    feasible: bool  # whether the chosen trial meets every target
    score: dict[str, Any]  # the chosen trial's: macro_f1, pointing_game, tumour_kept, ..., held-out fills by name
    flags: str  # the chosen trial's training flags
    importances: dict[str, float] = field(default_factory=dict)
    adopted: bool = False  # the model in this folder is the chosen trial's run


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
    training: TrainingRecord = field(default_factory=TrainingRecord)  # the recipe, command, timings (training.train)
    dataset: DatasetRecord | None = None
    metrics: Metrics | None = None  # None: no held-out figures (a model trained without a split)
    calibration: Calibration = field(default_factory=Calibration)
    mri_check: MriCheckRecord | None = None
    localisation: LocalisationRecord | None = None  # where the map points, measured (training.localise)
    conformal: ConformalRecord | None = None  # prediction-set thresholds (training.conformal)
    other_collections: dict[str, OtherCollectionRecord] = field(default_factory=dict)  # by folder name
    studies: dict[str, StudyRecord] = field(default_factory=dict)  # tuning studies of its recipe, by study name
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
        data = {
            key: {} if value is None and key in TYPED_BLOCKS else _plain(value)
            for key, value in ((key, getattr(self, key)) for key in self.__dataclass_fields__)
            if key not in OPTIONAL_KEYS or value
        }
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
        known = {key: value for key, value in _upgraded(data, version).items() if key in cls.__dataclass_fields__}
        known["input_size"] = tuple(known["input_size"])
        for key, kind in TYPED_BLOCKS.items():
            if key in known:
                known[key] = _typed_block(kind, known[key])
        known["calibration"] = known.get("calibration") or Calibration()
        known["training"] = known.get("training") or TrainingRecord()
        blocks = known.get("other_collections") or {}
        if not isinstance(blocks, dict):
            raise ModelSourceError("the model's metadata has other_collections that is not a block of figures by folder")
        known["other_collections"] = {name: _typed_block(OtherCollectionRecord, block) for name, block in blocks.items()}
        studies = known.get("studies") or {}
        if not isinstance(studies, dict):
            raise ModelSourceError("the model's metadata has studies that is not a block of figures by study")
        known["studies"] = {name: StudyRecord.from_dict(block) for name, block in studies.items()}
        known["schema_version"] = SCHEMA_VERSION  # older files load with today's defaults for the new keys
        return cls(**known)

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        return cls.from_dict(json.loads(Path(path).read_text()))


TYPED_BLOCKS: dict[str, type] = {
    "training": TrainingRecord,
    "dataset": DatasetRecord,
    "metrics": Metrics,
    "calibration": Calibration,
    "mri_check": MriCheckRecord,
    "localisation": LocalisationRecord,
    "conformal": ConformalRecord,
}


def _plain(value: Any) -> Any:
    """A field's JSON value: a block by its ``to_dict``, another dataclass field for field, a dict value by value."""
    if isinstance(value, Block):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict):
        return {key: _plain(each) for key, each in value.items()}
    return value


def _upgraded(data: dict[str, Any], version: int) -> dict[str, Any]:
    """An older file's keys in today's shape: before schema 6 the output folder was only the training command's --out."""
    training = data.get("training")
    if version >= 6 or not isinstance(training, dict) or "out" in training or not isinstance(training.get("command"), str):
        return data
    words = training["command"].split()
    if "--out" not in words[:-1]:
        return data
    return {**data, "training": {**training, "out": words[words.index("--out") + 1]}}


class ModelSourceError(ValueError):
    """A model source that cannot be resolved or loaded, worded for the person who named it."""
