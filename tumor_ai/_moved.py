"""The old flat module paths (``tumor_ai.models``, ``tumor_ai.handlers``, ...) for one release, with a DeprecationWarning.

The modules moved into the wings (``tumor_ai.model``, ``core``, ``publish``, ``app``). Rather than a file
left at each old path, one import hook answers the old names: importing one warns and hands back the moved
module itself (the same object, so ``monkeypatch`` and ``isinstance`` see one module), and ``python -m`` on
an old path runs the new one. ``tumor_ai.models`` was split in three; its old name is a module that holds
the contract's names and fetches the network builders from ``training.networks`` when asked for one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

WINGS = {
    "model": ("registry:architectures", "sources", "labels"),
    "core": (
        "imaging",
        "preprocessing",
        "inference",
        "cam",
        "calibration",
        "conformal",
        "mri_check",
        "erase",
        "batch",
        "explain",
        "safe_text",
        "microbatch",
        "precision",
    ),
    "publish": ("card", "hub", "space"),
    "app": ("serve", "ui", "handlers", "chat", "assistant", "tools", "tool_endpoints", "workspace", "predict"),
}
MOVED = {
    f"tumor_ai.{entry.partition(':')[2] or entry}": f"tumor_ai.{wing}.{entry.partition(':')[0]}"
    for wing, entries in WINGS.items()
    for entry in entries
}
MODELS = "tumor_ai.models"  # split into these three
MODELS_PARTS = ("tumor_ai.model.metadata", "tumor_ai.model.folder", "training.networks")
NETWORKS = {"build_cnn", "build_vgg16", "classification_head", "residual_block"}


def new_name(old: str) -> str:
    return ", ".join(MODELS_PARTS) if old == MODELS else MOVED[old]


def old_models() -> types.ModuleType:
    """``tumor_ai.models`` as it was: the metadata and the folder functions, and the builders fetched when asked for."""
    module = types.ModuleType(MODELS, f"Deprecated: split into {', '.join(MODELS_PARTS)}.")
    for part in MODELS_PARTS[:2]:
        found = importlib.import_module(part)
        module.__dict__.update({name: value for name, value in vars(found).items() if not name.startswith("__")})

    def networks(name: str):
        if name in NETWORKS:
            from tumor_ai.model.registry import import_training_aware

            return getattr(import_training_aware("training.networks"), name)
        raise AttributeError(f"module {MODELS!r} has no attribute {name!r}")

    module.__getattr__ = networks
    return module


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds each old path and loads it as the moved module."""

    def __init__(self) -> None:
        self.specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, name, path=None, target=None):
        if name in MOVED or name == MODELS:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {new_name(spec.name)}; the old path goes in the next release", DeprecationWarning, stacklevel=2
        )
        if spec.name == MODELS:
            return old_models()
        module = importlib.import_module(MOVED[spec.name])
        self.specs[module.__name__] = module.__spec__  # the import system sets the old name's spec; exec_module puts it back
        return module

    def exec_module(self, module) -> None:
        if module.__name__ in self.specs:
            module.__spec__ = self.specs[module.__name__]

    def get_code(self, name: str):
        """``python -m tumor_ai.OLD`` runs the moved module."""
        moved = importlib.util.find_spec(MOVED[name])
        return moved.loader.get_code(moved.name)


def install() -> None:
    if not any(isinstance(finder, OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(OldPaths())
