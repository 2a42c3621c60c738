"""Publish a model folder to the Hugging Face Hub in the layout Keras 3 reads back.

The repository gets exactly what ``keras.saving.save_model(model, "hf://USER/REPO")`` writes
(``config.json``, ``metadata.json``, ``model.weights.h5``), so plain Keras users can call
``keras.saving.load_model("hf://USER/REPO")``, plus our ``tumor_ai.json``, the MRI check, the
plots and a model card with Hub front matter, all in one commit. Loading goes through
``tumor_ai.models.load_model("hf://USER/REPO[@REVISION]")``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tumor_ai.card import model_card
from tumor_ai.models import CARD_FILE, METADATA_FILE, load_model

EXTRA_FILES = ("mri_check.npz", "split.json", "validation_report.json", "history.png", "confusion_matrix.png")


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
    (target / CARD_FILE).write_text(model_card(metadata, repo_id))
    return sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())


def push_model(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Create (or reuse) ``repo_id`` and upload the staged model in one commit; returns the commit URL."""
    import httpx2  # huggingface_hub 2.x's HTTP client
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` with a token that can write.")
    api = HfApi(token=token, library_name="tumor-ai")
    message = commit_message or f"Upload tumor-ai model {Path(folder).name}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as staging:
            operations = [
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(staging) / name))
                for name in stage_repository(folder, staging, repo_id)
            ]
            commit = api.create_commit(repo_id=repo_id, operations=operations, commit_message=message, repo_type="model")
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id} was not found, or the token cannot see it.") from None
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise HubError(f"the token has no write permission on {repo_id} (HTTP {status}).") from None
        raise HubError(f"the Hub refused the upload to {repo_id}: {str(error).splitlines()[0]}") from None
    except (OSError, httpx2.HTTPError) as error:
        raise HubError(f"cannot reach the Hugging Face Hub ({type(error).__name__}); check the network or HF_ENDPOINT.") from None
    return str(getattr(commit, "commit_url", commit))
