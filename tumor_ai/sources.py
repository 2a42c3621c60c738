"""Where each model comes from: one answer for the app, the Space and the command line.

An explicit source wins, then ``TUMOR_AI_CNN`` / ``TUMOR_AI_VGG16``, then, on a Hugging Face
Space (``SPACE_ID`` set), the repos that README.md's front matter preloads (``preload_from_hub``),
so the files built into the Space are the ones served; otherwise ``<models>/<name>``, where
``<models>`` is ``--models``, ``TUMOR_AI_MODELS``, or a clone's own ``models/``. A Hub source
that fails falls back to ``<models>/<name>``, and the app says so. An installed package carries
no models: when none are found, one sentence says what to pass.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
MODEL_NAMES = ("cnn", "vgg16")


def space_repos(readme: Path = ROOT / "README.md") -> dict[str, str]:
    """The ``hf://`` source of each model the Space's front matter preloads (repos named ``*-cnn``, ``*-vgg16``)."""
    from huggingface_hub.repocard import metadata_load

    if not readme.exists():
        return {}
    repos = [str(entry).split()[0] for entry in (metadata_load(readme) or {}).get("preload_from_hub", [])]
    return {name: f"hf://{repo}" for repo in repos for name in MODEL_NAMES if repo.endswith(f"-{name}")}


def models_dir(models: str | Path | None = None) -> Path:
    """The folder that holds ``cnn/`` and ``vgg16/``: the argument, ``TUMOR_AI_MODELS``, or a clone's ``models/``."""
    return Path(models or os.environ.get("TUMOR_AI_MODELS") or MODELS_DIR)


def model_sources(explicit: dict[str, str | None] | None = None, models: str | Path | None = None) -> dict[str, str]:
    """Each model's source, by the precedence in this module's docstring; a missing local folder is one sentence."""
    from tumor_ai.models import ModelSourceError

    explicit = explicit or {}
    space = space_repos() if os.environ.get("SPACE_ID") else {}
    local = models_dir(models)
    sources = {
        name: explicit.get(name) or os.environ.get(f"TUMOR_AI_{name.upper()}") or space.get(name) or str(local / name)
        for name in MODEL_NAMES
    }
    missing = [source for source in sources.values() if not source.startswith("hf://") and not Path(source).exists()]
    if missing:
        raise ModelSourceError(
            f"no model at {', '.join(missing)}: pass --models DIR (a folder holding cnn/ and vgg16/, e.g. a clone's "
            "models/), or --cnn/--vgg16 with a folder or hf://USER/REPO, or set TUMOR_AI_MODELS"
        )
    return sources


def local_fallbacks(models: str | Path | None = None) -> dict[str, str]:
    """The local model folders, served when a Hub source cannot be loaded."""
    return {name: str(models_dir(models) / name) for name in MODEL_NAMES}
