"""Where each model comes from: one answer for the app, the Space and the command line.

An explicit source wins, then ``TUMOR_AI_CNN`` / ``TUMOR_AI_VGG16``, then, on a Hugging Face
Space (``SPACE_ID`` set), the repos that README.md's front matter preloads (``preload_from_hub``),
so the files built into the Space are the ones served; otherwise the shipped ``models/<name>``.
A Hub source that fails falls back to ``models/<name>``, and the app says so.
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


def model_sources(explicit: dict[str, str | None] | None = None) -> dict[str, str]:
    """Each model's source, by the precedence in this module's docstring."""
    explicit = explicit or {}
    space = space_repos() if os.environ.get("SPACE_ID") else {}
    return {
        name: explicit.get(name) or os.environ.get(f"TUMOR_AI_{name.upper()}") or space.get(name) or str(MODELS_DIR / name)
        for name in MODEL_NAMES
    }


def local_fallbacks() -> dict[str, str]:
    """The shipped model folders, served when a Hub source cannot be loaded."""
    return {name: str(MODELS_DIR / name) for name in MODEL_NAMES}
