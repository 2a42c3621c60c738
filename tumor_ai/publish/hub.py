"""Publish a model folder to the Hugging Face Hub in the layout Keras 3 reads back.

The repository gets exactly what ``keras.saving.save_model(model, "hf://USER/REPO")`` writes
(``config.json``, ``metadata.json``, ``model.weights.h5``), so plain Keras users can call
``keras.saving.load_model("hf://USER/REPO")``, plus our ``tumor_ai.json``, the MRI check, the
plots and a model card with Hub front matter, all in one commit. Loading goes through
``tumor_ai.model.folder.load_model("hf://USER/REPO[@REVISION]")``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tumor_ai.model.folder import CARD_FILE, METADATA_FILE, load_model
from tumor_ai.model.metadata import RELIABILITY_FILE, STUDY_PLOT
from tumor_ai.publish.card import model_card

if TYPE_CHECKING:
    from huggingface_hub import HfApi

EXTRA_FILES = ("mri_check.npz", "split.json", "validation_report.json", "history.png", "confusion_matrix.png", RELIABILITY_FILE)


class HubError(RuntimeError):
    """A publishing problem worded for the user: no token, no permission, no network."""


def stage_repository(folder: str | Path, target: str | Path, repo_id: str) -> list[str]:
    """Write the repository's files into ``target``; returns their names, sorted."""
    import keras

    model, metadata = load_model(folder)
    target = Path(target)
    keras.saving.save_model(model, target, zipped=False)  # the hf:// layout, written locally
    shutil.copy(Path(folder) / METADATA_FILE, target / METADATA_FILE)
    for name in EXTRA_FILES:
        if (Path(folder) / name).exists():
            shutil.copy(Path(folder) / name, target / name)
    for plot in Path(folder).glob(STUDY_PLOT.format(study="*")):  # the tuning studies' plots the card shows
        shutil.copy(plot, target / plot.name)
    (target / CARD_FILE).write_text(model_card(metadata, repo_id))
    return sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())


def hub_api(token: str | None = None) -> HfApi:
    """An ``HfApi`` with a token that may write; no token is one sentence, before any request is made."""
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` with a token that can write.")
    return HfApi(token=token, library_name="tumor-ai")


@contextmanager
def hub_errors(repo_id: str, action: str = "the upload to") -> Iterator[None]:
    """Turn huggingface_hub's and the network's exceptions into one HubError sentence naming ``repo_id``."""
    import httpx2  # huggingface_hub 2.x's HTTP client
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id} was not found, or the token cannot see it.") from None
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise HubError(f"the token has no write permission on {repo_id} (HTTP {status}).") from None
        raise HubError(f"the Hub refused {action} {repo_id}: {str(error).splitlines()[0]}") from None
    except (OSError, httpx2.HTTPError) as error:
        raise HubError(f"cannot reach the Hugging Face Hub ({type(error).__name__}); check the network or HF_ENDPOINT.") from None


def push_model(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Create (or reuse) ``repo_id`` and upload the staged model in one commit; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd

    api = hub_api(token)
    message = commit_message or f"Upload tumor-ai model {Path(folder).name}"
    with hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as staging:
            operations = [
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(staging) / name))
                for name in stage_repository(folder, staging, repo_id)
            ]
            commit = api.create_commit(repo_id=repo_id, operations=operations, commit_message=message, repo_type="model")
    return str(getattr(commit, "commit_url", commit))
