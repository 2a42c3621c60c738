"""Where each model comes from: one answer for the app, the Space and the command line.

The models are the registered architectures (``tumor_ai.model.registry``: ``cnn`` and ``vgg16``
unless more are registered). For each, an explicit source (``--NAME``) wins, then
``TUMOR_AI_NAME`` (``TUMOR_AI_CNN``, ``TUMOR_AI_VGG16``), then, on a Hugging Face
Space (``SPACE_ID`` set), the repos that README.md's front matter preloads (``preload_from_hub``),
so the files built into the Space are the ones served; otherwise ``<models>/<name>``, where
``<models>`` is ``--models``, ``TUMOR_AI_MODELS``, or a clone's own ``models/``. A Hub source
that fails falls back to ``<models>/<name>``, and the app says so. An installed package carries
no models: when none are found, one sentence says what to pass.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tumor_ai.model import registry as architectures

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "models"


def add_source_arguments(parser: argparse.ArgumentParser, where: str = "the Space's preloaded repo, ") -> None:
    """``--models`` and one ``--NAME`` per registered architecture, for ``serve`` and ``predict``."""
    parser.add_argument(
        "--models", help="folder holding one model folder per architecture, e.g. cnn/ and vgg16/ (env TUMOR_AI_MODELS)"
    )
    for name in architectures.names():
        parser.add_argument(
            f"--{name}",
            metavar="SOURCE",
            help=f"{architectures.title(name)}: a folder, a .keras file or hf://USER/REPO[@REV] "
            f"(default: env {environment_variable(name)}, {where}or models/{name})",
        )


def explicit_sources(args: argparse.Namespace) -> dict[str, str | None]:
    """The ``--NAME`` flags that ``add_source_arguments`` made, by architecture name."""
    return {name: getattr(args, name, None) for name in architectures.names()}


def environment_variable(name: str) -> str:
    return f"TUMOR_AI_{name.upper()}"


def space_repos(readme: Path = ROOT / "README.md") -> dict[str, str]:
    """The ``hf://`` source of each model the Space's front matter preloads (repos named ``*-cnn``, ``*-vgg16``)."""
    from huggingface_hub.repocard import metadata_load

    if not readme.exists():
        return {}
    repos = [str(entry).split()[0] for entry in (metadata_load(readme) or {}).get("preload_from_hub", [])]
    return {name: f"hf://{repo}" for repo in repos for name in architectures.names() if repo.endswith(f"-{name}")}


def models_dir(models: str | Path | None = None) -> Path:
    """The folder that holds ``cnn/`` and ``vgg16/``: the argument, ``TUMOR_AI_MODELS``, or a clone's ``models/``."""
    return Path(models or os.environ.get("TUMOR_AI_MODELS") or MODELS_DIR)


def model_sources(explicit: dict[str, str | None] | None = None, models: str | Path | None = None) -> dict[str, str]:
    """Each served model's source, by the precedence in this module's docstring; a missing local folder is one sentence.

    Served: every architecture registered as served by default, and any other one given a source.
    """
    from tumor_ai.model.metadata import ModelSourceError

    explicit = explicit or {}
    space = space_repos() if os.environ.get("SPACE_ID") else {}
    local = models_dir(models)
    named = {
        name: explicit.get(name) or os.environ.get(environment_variable(name)) or space.get(name)
        for name in architectures.names()
    }
    sources = {name: source or str(local / name) for name, source in named.items() if source or architectures.get(name).served}
    missing = [source for source in sources.values() if not source.startswith("hf://") and not Path(source).exists()]
    if missing:
        raise ModelSourceError(
            f"no model at {', '.join(missing)}: pass --models DIR (a folder holding {' and '.join(f'{n}/' for n in sources)}, "
            f"e.g. a clone's models/), or {'/'.join(f'--{n}' for n in sources)} with a folder or hf://USER/REPO, "
            "or set TUMOR_AI_MODELS"
        )
    return sources


def local_fallbacks(models: str | Path | None = None) -> dict[str, str]:
    """The local model folders, served when a Hub source cannot be loaded."""
    return {name: str(models_dir(models) / name) for name in architectures.names()}
