"""Deploy the app as a Hugging Face Space: both models to their model repos, then the Space, in one call.

The Space gets ``app.py``, the ``tumor_ai/`` package, ``requirements.txt``, the LFS rules of
``.gitattributes`` and a README.md whose front matter is this repository's, with ``models`` and
``preload_from_hub`` naming exactly the model repos just pushed. That front matter is also what
tells the deployed app which repos to serve (``tumor_ai.model.sources.space_repos`` matches ``*-cnn`` /
``*-vgg16``), so nothing else needs setting. Private model repos cannot be preloaded: then the front
matter lists them under ``models`` only, and the Space variables ``TUMOR_AI_CNN`` / ``TUMOR_AI_VGG16``
name them instead.
Everything goes through huggingface_hub's HTTP API, which stores large files as LFS itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tumor_ai import DISCLAIMER
from tumor_ai.model import registry as architectures
from tumor_ai.model.metadata import METADATA_FILE, ModelSourceError
from tumor_ai.model.sources import ROOT
from tumor_ai.publish.hub import HubError, hub_api, hub_errors, push_model

SPACE_FILES = ("app.py", "requirements.txt", ".gitattributes")  # beside the package
LOCAL_ATTRIBUTES = "# This repository keeps its own binaries"  # .gitattributes' block for this repo only
PACKAGE = "tumor_ai"
SKIPPED_PARTS = ("__pycache__",)  # byte code the Space compiles itself


@dataclass(frozen=True)
class Deployment:
    """What one deploy pushed: the Space, each model slot's repo, and each commit's URL by repo id."""

    space_id: str
    model_repos: dict[str, str]
    commits: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # Space variables set (private models only)


def default_model_repos(space_id: str) -> dict[str, str]:
    """``USER/tumor-ai-NAME`` for each served architecture (``cnn``, ``vgg16``) and the Space ``USER/SPACE``."""
    owner = space_id.split("/")[0]
    return {name: f"{owner}/tumor-ai-{name}" for name in architectures.served_names()}


def check_model_repos(model_repos: dict[str, str]) -> None:
    """Each slot's repo must end in ``-<slot>``: that suffix is how the Space finds which model is which."""
    for name, repo in model_repos.items():
        if name not in architectures.names():
            raise HubError(f"unknown model '{name}' in --model-repo: use one of {', '.join(architectures.names())}.")
        if repo.count("/") != 1 or not repo.endswith(f"-{name}"):
            raise HubError(f"the {name} repo must look like USER/NAME-{name} (the Space matches the suffix), not '{repo}'.")


def model_folders(models: Path) -> dict[str, Path]:
    """``<models>/NAME`` for each served architecture; a missing one is one sentence, before anything is pushed."""
    folders = {name: models / name for name in architectures.served_names()}
    missing = [str(folder) for folder in folders.values() if not (folder / METADATA_FILE).exists()]
    if missing:
        held = " and ".join(f"{name}/" for name in folders)
        raise ModelSourceError(f"no model at {', '.join(missing)}: pass --models DIR, a folder holding {held}.")
    return folders


def space_files(root: Path = ROOT) -> dict[str, Path]:
    """The Space's files copied as they are, by their path there: the entry point, the pins and the package."""
    files = {name: root / name for name in SPACE_FILES}  # .gitattributes: checked here, rewritten below
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing or not (root / PACKAGE / "__init__.py").is_file():
        raise HubError(f"--space deploys from a clone of tumor-ai, and {root} lacks {', '.join(missing) or PACKAGE}.")
    for path in sorted((root / PACKAGE).rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part in SKIPPED_PARTS for part in relative.parts) and path.suffix != ".pyc":
            files[relative.as_posix()] = path
    return files


def space_readme(repos: list[str], private: bool = False, root: Path = ROOT) -> str:
    """The Space's README.md: this repository's front matter naming ``repos``, and a short body."""
    from huggingface_hub import SpaceCard, constants

    card = SpaceCard.load(root / "README.md")
    card.data.models = list(repos)
    card.data.preload_from_hub = None if private else list(repos)  # None drops the key: private repos cannot preload
    links = ", ".join(f"[{repo}]({constants.ENDPOINT}/{repo})" for repo in repos)
    card.text = (
        f"\n# {card.data.title or 'tumor-ai'}\n\n"
        "Sorts a brain MRI slice into glioma, meningioma, pituitary tumour or no tumour, with two Keras 3 "
        f"models and Grad-CAM maps. This Space serves {links}.\n\n"
        f"> ⚠️ **{DISCLAIMER}**\n\n"
        "Deployed with `tumor-ai publish --space`; the code is `app.py` and the `tumor_ai/` package.\n"
    )
    return str(card)


def space_gitattributes(root: Path = ROOT) -> bytes:
    """The root .gitattributes without its block for this repository, whose binaries are plain git objects.

    The Space stores its binaries in LFS, so a git clone of it needs every LFS rule and no exemption.
    """
    text = (root / ".gitattributes").read_text()
    return text.split(LOCAL_ATTRIBUTES, 1)[0].rstrip("\n").encode() + b"\n"


def space_contents(repos: list[str], private: bool = False, root: Path = ROOT) -> dict[str, Path | bytes]:
    """Every file of the Space by its path there: the files as they are, and the two written for it."""
    return {
        **space_files(root),
        ".gitattributes": space_gitattributes(root),
        "README.md": space_readme(repos, private, root).encode(),
    }


def push_space(
    space_id: str,
    model_repos: dict[str, str],
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    root: Path = ROOT,
) -> str:
    """Create (or update) the Gradio Space in one commit, removing package files it no longer has; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = space_contents(list(model_repos.values()), private, root)
    api = hub_api(token)
    with hub_errors(space_id):
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        stale = [
            name
            for name in api.list_repo_files(space_id, repo_type="space")
            if name.startswith(f"{PACKAGE}/") and name not in files
        ]
        operations = [CommitOperationDelete(path_in_repo=name) for name in stale]
        operations += [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=content if isinstance(content, bytes) else str(content))
            for name, content in files.items()
        ]
        message = commit_message or f"Deploy tumor-ai serving {', '.join(model_repos.values())}"
        commit = api.create_commit(repo_id=space_id, operations=operations, commit_message=message, repo_type="space")
    return str(getattr(commit, "commit_url", commit))


def set_space_variables(space_id: str, model_repos: dict[str, str], token: str | None = None) -> dict[str, str]:
    """Name private model repos in Space variables, the only way sources.py finds them without preloading."""
    api = hub_api(token)
    variables = {f"TUMOR_AI_{name.upper()}": f"hf://{repo}" for name, repo in model_repos.items()}
    with hub_errors(space_id, "the variables of"):
        for key, value in variables.items():
            api.add_space_variable(space_id, key, value, description="model served by tumor-ai (tumor-ai publish --space)")
    return variables


def deploy_space(
    space_id: str,
    models: Path,
    model_repos: dict[str, str] | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    root: Path = ROOT,
) -> Deployment:
    """Push each model folder under ``models`` to its repo, then the Space that serves exactly those repos."""
    repos = {**default_model_repos(space_id), **(model_repos or {})}
    check_model_repos(repos)
    folders = model_folders(models)
    space_files(root)  # a missing file is reported before any model is pushed
    commits = {
        repos[name]: push_model(folder, repos[name], private=private, commit_message=commit_message, token=token)
        for name, folder in folders.items()
    }
    commits[space_id] = push_space(space_id, repos, private, commit_message, token, root)
    variables = set_space_variables(space_id, repos, token) if private else {}
    return Deployment(space_id, repos, commits, variables)
