"""A model folder: saving and loading a model together with its metadata, from a folder, a file or the Hub.

Keras is imported when a model is saved or loaded, never when this module is: the contract
(``tumor_ai.model``) reads and writes metadata without TensorFlow.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from tumor_ai.model.metadata import CARD_FILE, METADATA_FILE, MODEL_FILE, ModelMetadata, ModelSourceError

if TYPE_CHECKING:
    import keras

__all__ = [
    "CARD_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "ModelSourceError",
    "library_versions",
    "load_model",
    "parse_hub_source",
    "read_metadata",
    "resolve_source",
    "save_model_folder",
    "without_optimizer",
]


def library_versions() -> dict[str, str]:
    """Pinned versions recorded with a model, as MONAI bundles do."""
    import keras
    import numpy
    import tensorflow

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": tensorflow.__version__,
        "numpy": numpy.__version__,
        "keras_backend": keras.backend.backend(),
    }


def without_optimizer(model: keras.Model) -> keras.Model:
    """An uncompiled float32 copy with the same layers, names and weights.

    Nothing of the optimizer is saved, and a model trained in mixed precision is served in
    float32 (its variables already are), so serving never depends on the training CPU.
    """
    import keras

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


def shown_source(source: str) -> str:
    """A local model path relative to the working directory, or its folder's name alone when it lies outside it (no
    machine paths on a public page)."""
    if str(source).startswith("hf://"):
        return str(source)
    try:
        shown = os.path.relpath(source)
    except ValueError:
        return Path(source).name
    return Path(source).name if shown == ".." or shown.startswith(".." + os.sep) else shown


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


def read_metadata(folder: Path, source: str | Path) -> ModelMetadata:
    """The ``tumor_ai.json`` of the model in ``folder`` (from ``source``), without Keras; one sentence if it is missing
    or damaged (``ModelSourceError``)."""
    metadata_path = Path(folder) / METADATA_FILE
    if not metadata_path.exists():
        raise ModelSourceError(f"{source}: {METADATA_FILE} (labels, preprocessing, Grad-CAM layer) is missing")
    try:
        return ModelMetadata.read(metadata_path)
    except (ValueError, TypeError, KeyError, OSError) as error:  # JSONDecodeError is a ValueError
        raise ModelSourceError(f"{source}: {METADATA_FILE} is damaged and cannot be read ({type(error).__name__}).") from None


def load_model(source: str | Path) -> tuple[keras.Model, ModelMetadata]:
    """Load a model and its metadata from a folder, a ``.keras`` file or ``hf://USER/REPO[@rev]``.

    A folder holds either ``model.keras`` or the Hub layout that ``keras.saving.save_model(model,
    "hf://...")`` writes (``config.json``, ``model.weights.h5``); ``tumor_ai.json`` sits beside.
    """
    import keras

    folder = resolve_source(source)
    text = str(source)
    model_path = Path(text) if text.endswith(".keras") and not text.startswith("hf://") else folder / MODEL_FILE
    if not model_path.exists():
        model_path = folder  # the unzipped Keras layout of a Hub repo
        if not (folder / "config.json").exists():
            raise ModelSourceError(f"{source}: no {MODEL_FILE} and no Keras config.json found")
    metadata = read_metadata(folder, source)
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # noqa: BLE001 - a truncated zip, a broken config, missing weights: one sentence
        name = model_path.name if model_path != folder else "config.json and model.weights.h5"
        reason = type(error).__name__
        raise ModelSourceError(f"{source}: {name} is damaged or incomplete and cannot be loaded ({reason}).") from None
    return model, metadata
