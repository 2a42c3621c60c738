"""The model registry: one entry per architecture, found by name.

Serving, the command lines, the model card and the app read the architectures from here, so a
third network is one new file (its builder, recipe and trainer) and one ``register`` call:

    register(Architecture(
        name="resnet", title="ResNet-18 from scratch",
        build="training.resnet:build_resnet", recipe="training.resnet:ResnetRecipe",
        train="training.cnn:train_end_to_end",
    ))

``build``, ``recipe`` and ``train`` may be the objects themselves or ``"module:attribute"``
strings, imported only when asked for: serving never imports the training code. A module named
``training.…`` is the repository's ``training/`` folder, or ``tumor_ai.training`` in the wheel.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """What tumor-ai knows of one kind of network, beyond what each trained model's metadata says."""

    name: str  # the model folder (models/NAME), the flag --NAME and the variable TUMOR_AI_NAME
    title: str  # "Custom CNN": headings in the app, the card and the command-line help
    build: Callable[..., Any] | str  # (labels, input_size, *, crop, preprocessing, ...) -> (keras.Model, ModelMetadata)
    recipe: type | str  # a training.recipe.Recipe subclass: the defaults this architecture trains with
    train: Callable[..., Any] | str  # (recipe, run, dataset, train_idx, validation_idx, strategy) -> TrainResult
    served: bool = True  # served by default (a Hub source, TUMOR_AI_NAME or models/NAME must exist)
    base_model: str | None = None  # the Hub id of the weights it starts from, for the card's front matter
    attribution: str = ""  # the card's credit for those weights

    def builder(self) -> Callable[..., Any]:
        return resolve(self.build)

    def recipe_class(self) -> type:
        return resolve(self.recipe)

    def trainer(self) -> Callable[..., Any]:
        return resolve(self.train)


ARCHITECTURES: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Add (or replace) an architecture; its name must be a lower-case identifier, as it becomes a flag and a folder."""
    if not architecture.name.isidentifier() or architecture.name != architecture.name.lower():
        raise ValueError(f"architecture name {architecture.name!r}: use a lower-case identifier, e.g. 'resnet18'")
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def builds(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a network builder where it is defined to make it the registered architecture ``name``'s builder.

    The entry names the builder's module (``"training.networks:build_cnn"``), so the registry lists every
    architecture without importing training code; importing that module binds the function itself.
    """

    def bind(function: Callable[..., Any]) -> Callable[..., Any]:
        if name in ARCHITECTURES:
            ARCHITECTURES[name] = dataclasses.replace(ARCHITECTURES[name], build=function)
        return function

    return bind


def unregister(name: str) -> None:
    ARCHITECTURES.pop(name, None)


def get(name: str) -> Architecture:
    """The registered architecture called ``name``; an unknown one is one sentence naming the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"no architecture called {name!r}; tumor-ai knows {', '.join(ARCHITECTURES)}") from None


def find(name: str) -> Architecture | None:
    """The architecture a model's metadata names, or ``None`` for one this tumor-ai does not know (it still serves)."""
    return ARCHITECTURES.get(name)


def names() -> list[str]:
    return list(ARCHITECTURES)


def served_names() -> list[str]:
    return [name for name, architecture in ARCHITECTURES.items() if architecture.served]


def title(name: str) -> str:
    """A model's heading: its architecture's title, or the name itself for one the registry does not hold."""
    found = ARCHITECTURES.get(name)
    return found.title if found else name


def resolve(target: Any) -> Any:
    """``"module:attribute"`` imported (``training.`` from the clone or the wheel); anything else as it is."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    return getattr(import_training_aware(module_name), attribute)


def import_training_aware(module_name: str):
    """Import a module; ``training.X`` is ``tumor_ai.training.X`` in an installed wheel, ``training/X.py`` in a clone."""
    if module_name.startswith("training."):
        try:
            return importlib.import_module(f"tumor_ai.{module_name}")
        except ModuleNotFoundError as error:
            if error.name not in ("tumor_ai.training", f"tumor_ai.{module_name}"):
                raise
    return importlib.import_module(module_name)


VGG16_ATTRIBUTION = (
    "The convolution base starts from the ImageNet VGG16 weights of K. Simonyan and A. Zisserman, "
    '"Very Deep Convolutional Networks for Large-Scale Image Recognition", arXiv:1409.1556, '
    "licensed CC BY 4.0; this model is a derivative of those weights and is shared under the same licence."
)

register(
    Architecture(
        name="cnn",
        title="Custom CNN",
        build="training.networks:build_cnn",
        recipe="training.cnn:CnnRecipe",
        train="training.cnn:train_end_to_end",
    )
)
register(
    Architecture(
        name="vgg16",
        title="VGG16 transfer model",
        build="training.networks:build_vgg16",
        recipe="training.vgg16:Vgg16Recipe",
        train="training.vgg16:train_vgg16",
        base_model="keras/vgg_16_imagenet",  # the KerasHub preset of the same ImageNet weights
        attribution=VGG16_ATTRIBUTION,
    )
)
