"""Training recipes: a typed dataclass per architecture, and the command line made from them.

A ``Recipe`` holds everything that decides the weights (a refit repeats its split run's recipe
field for field); each architecture subclasses it with its own defaults and fields, beside its
trainer (``training.cnn.CnnRecipe``, ``training.vgg16.Vgg16Recipe``). ``RunOptions`` holds what
only says where and how this run goes (data, output, cache, resume). ``training.train`` builds
its flags from the fields of every registered recipe, so a field is named and explained once.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar


def option(default: Any, help: str, **argparse_options: Any) -> Any:  # noqa: A002 - argparse's own word
    """A recipe field with its command-line help (and e.g. ``choices`` or ``metavar``)."""
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class Recipe:
    """The choices shared by every architecture; subclasses change the defaults and add their own fields."""

    preprocessings: ClassVar[tuple[str, ...]] = ("luminance", "rescale_unit")  # what the network can be fed
    distributable: ClassVar[bool] = True  # trains under a tf.distribute strategy (--distribute)
    fine_tunable: ClassVar[bool] = True  # its trainer can start from a model folder's weights (--start-from)

    model: str = ""  # the architecture's registry name, filled in by training.train
    epochs: int = option(22, "length of the learning-rate schedule in epochs")
    batch_size: int = option(32, "batch size")
    learning_rate: float = option(2e-3, "peak Adam learning rate after warm-up")
    warmup_epochs: float = option(2.0, "epochs (may be a fraction) of linear warm-up before the cosine")
    label_smoothing: float = option(0.1, "label smoothing of the loss")
    input_size: int = option(256, "square input side in pixels")
    crop: str = option(
        "head",
        "crop each slice to the head's bounding square before resizing (recorded in the metadata, so serving does the same)",
        choices=("none", "head"),
    )
    preprocessing: str = option(
        "luminance",
        "what the network is fed (tumor_ai.core.preprocessing): 'luminance' is one channel with the head's mean brightness "
        "brought to 0.5 (no colour or level to tell collections apart), 'rescale_unit' RGB/255, 'vgg16' VGG16's caffe "
        "preprocess_input, 'vgg16_luminance' luminance as grey RGB",
    )
    seed: int = option(0, "seed of the split, augmentation and weights")
    validation_fraction: float = option(0.2, "share held out by duplicate group")
    patience: int = option(3, "early-stopping patience on validation loss")
    early_stopping_from: int = option(12, "first epoch (0-based) early stopping watches, past the noisy high-rate phase")
    rand_augment: bool = option(False, "add keras.layers.RandAugment to the augmentation")
    precision: str = option(
        "auto",
        "training precision: 'auto' is mixed bfloat16 where the CPU has AVX512-BF16 or AMX, else float32; the saved "
        "model is float32 either way",
        choices=("auto", "float32", "bfloat16"),
    )
    acquisition: bool = option(False, "vary resolution, blur, noise and JPEG quality in training (training.pipeline.ACQUISITION)")
    masks: str | None = option(
        None,
        "tumour masks folder (<class>/<stem>.png, e.g. ../shared/data/brain-tumor-mri/masks/Training): train on "
        "counterfactuals, tumours erased and relabelled no tumour, and same-size control erasures",
    )
    erase: float = option(0.2, "with --masks: share of masked images an epoch erases")
    control: float = option(0.2, "with --masks: share of all images given a control erasure instead")
    erase_grow: tuple[int, int] = option(
        (2, 8),
        "with --masks: pixels (of the input) an outline is grown by before it is erased, drawn per variant",
        nargs=2,
        metavar=("MIN", "MAX"),
    )
    erase_grow_class: str = option(
        "",
        "with --masks: per-class growth instead of --erase-grow, as CLASS=MIN:MAX items split by commas (e.g. "
        "glioma=4:16: glioma outlines often cover the enhancing core, not the oedema)",
        metavar="CLASS=MIN:MAX,...",
    )
    counterfactuals_per_image: int = option(2, "with --masks: erased and control variants made per image")
    erased_label: str = option(
        "notumor",
        "with --masks: the target of a slice whose tumour was erased: 'notumor' (hard), or 'not-class', any class but "
        "the tumour's own (-log(1 - p_class); a softer target when an outline may leave part of the lesion)",
        choices=("notumor", "not-class"),
    )
    guidance: float = option(
        0.0, "with --masks: weight of the term that penalises map mass outside the tumour (training.guidance; 0: off)"
    )
    partial: str | None = option(
        None,
        "folder of slices labelled 'tumour, type unknown' (a tumour/ sub-folder and an optional groups.csv, e.g. "
        "../shared/data/br35h): split by slice group like the main data; each training slice adds the loss of the "
        "tumour classes' total probability (training.partial), the validation slices are scored for sensitivity",
    )
    partial_repeat: int = option(1, "with --partial: times each partial-label training slice appears in an epoch")
    sequence: float = option(
        0.0,
        "share of training images whose intensities are remapped as another sequence or collection would show them "
        "(training.sequence: histogram matched to a slice of another class, contrast inverted, random curve, bias field)",
    )
    start_from: str | None = option(
        None,
        "a model folder of the same architecture, input size, crop and preprocessing whose weights this run starts from "
        "(a fine-tune, e.g. to add --partial and --sequence to a shipped model); it must be a split run that held out "
        "this run's validation images",
        metavar="MODEL_FOLDER",
    )
    guidance_from: int = option(2, "first epoch (0-based) of the guidance term")
    guidance_ramp: int = option(2, "epochs over which its weight rises to --guidance")

    def __post_init__(self) -> None:
        # A pair read back from JSON metadata or from argparse's nargs=2 is a list; the recipe holds tuples.
        for item in fields(self):
            if isinstance(item.default, tuple):
                setattr(self, item.name, tuple(getattr(self, item.name)))

    @property
    def size(self) -> tuple[int, int]:
        return (self.input_size, self.input_size)

    def check(self) -> str | None:
        """What is wrong with this combination of choices, in one sentence, or ``None``."""
        if self.preprocessing not in self.preprocessings:
            return f"--preprocessing {self.preprocessing}: --model {self.model} takes {', '.join(self.preprocessings)}"
        if self.erased_label != "notumor" and not self.masks:
            return "--erased-label needs --masks: it is the target of a slice whose tumour was erased"
        if self.guidance and not self.masks:
            return "--guidance needs --masks: it steers the map towards the tumour outlines"
        if self.partial_repeat < 1:
            return "--partial-repeat counts how often each partial slice appears in an epoch: 1 or more"
        if not 0.0 <= self.sequence <= 1.0:
            return "--sequence is the share of training images remapped: between 0 and 1"
        if self.start_from and not self.fine_tunable:
            return f"--start-from is for networks trained end to end; the {self.model} starts from its backbone weights"
        return None

    def own_fields(self) -> dict[str, Any]:
        """The fields this architecture's recipe adds to the shared ones."""
        shared = {item.name for item in fields(Recipe)}
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name not in shared}

    def arguments(self) -> dict[str, Any]:
        """The recipe as the metadata records it (``training.arguments``), JSON-ready."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> Recipe:
        """A recipe from recorded arguments (a split run's), ignoring keys this recipe does not have."""
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in arguments.items() if key in known})


@dataclass
class RunOptions:
    """Where a run reads and writes, and how it continues: nothing here changes the weights."""

    data: str
    out: str
    cache_dir: str = ".cache"
    resume: bool = False
    refit: str | None = None  # the split run whose recipe and epoch counts a refit repeats
    stop_after_epochs: int | None = None
    distribute: str = "none"
    dataset_name: str | None = None  # the model card's name of the data (default: its README's heading)
    dataset_license: str | None = None  # its licence (default: the one its README names)


@dataclass
class TrainResult:
    """What a trainer hands back to ``training.train``: the model and how it got there."""

    model: object
    metadata: object
    histories: dict[str, dict[str, list[float]]]
    class_weights: dict[int, float] | None
    chosen_epochs: int
    throughput: dict = field(default_factory=dict)
    stage_epochs: dict[str, int] = field(default_factory=dict)  # per stage, for a refit of a two-stage recipe


def recipe_fields(recipes: dict[str, type[Recipe]]) -> dict[str, dict[str, Any]]:
    """Every field of the given recipes, once: its help (from the class that declared it) and each recipe's default.

    A subclass that only changes a default (``epochs: int = 5``) keeps the help ``Recipe`` gives the field.
    """
    shared = {item.name: dict(item.metadata) for item in fields(Recipe)}
    found: dict[str, dict[str, Any]] = {}
    for name, recipe in recipes.items():
        for item in fields(recipe):
            if item.name == "model":
                continue
            entry = found.setdefault(item.name, {"type": item.type, "options": shared.get(item.name, {}), "defaults": {}})
            if "help" in item.metadata and not entry["options"]:
                entry["options"] = dict(item.metadata)
            entry["defaults"][name] = item.default if item.default is not MISSING else None
    return found


def add_recipe_arguments(parser: argparse.ArgumentParser, recipes: dict[str, type[Recipe]]) -> None:
    """One flag per recipe field; its help ends with each architecture's default, or names the ones that have it."""
    for name, entry in recipe_fields(recipes).items():
        options = dict(entry["options"])
        help_text = options.pop("help", "")
        defaults = entry["defaults"]
        values = {_shown(value) for value in defaults.values()}
        if len(defaults) < len(recipes):
            help_text += f" ({', '.join(f'{model} only, default {_shown(value)}' for model, value in defaults.items())})"
        elif len(values) > 1:
            help_text += f" ({', '.join(f'{model} {_shown(value)}' for model, value in defaults.items())})"
        elif entry["type"] != "bool":
            help_text += f" (default {next(iter(values))})"
        flag = "--" + name.replace("_", "-")
        if entry["type"] == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
            continue
        converter = {"int": int, "float": float, "tuple[int, int]": int}.get(entry["type"], str)
        parser.add_argument(flag, type=converter, default=None, help=help_text, **options)


def _shown(value: Any) -> str:
    """A default as a person would type it: ``2 8`` for a pair."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def recipe_from_namespace(
    recipe_class: type[Recipe], model: str, args: argparse.Namespace, all_fields: set[str]
) -> tuple[Recipe, list[str]]:
    """The recipe the flags ask for (unset flags keep the architecture's defaults), and the given flags of
    ``all_fields`` (every registered recipe's) that this architecture has no use for."""
    known = {item.name for item in fields(recipe_class)} - {"model"}
    given = {key: value for key, value in vars(args).items() if value is not None and key in all_fields}
    values = {key: value for key, value in given.items() if key in known}
    foreign = ["--" + key.replace("_", "-") for key in given if key not in known]
    return recipe_class(model=model, **values), foreign
