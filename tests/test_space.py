"""`tumor-ai publish --space` end to end, with no network: uploads recorded, then served back by a Hub server.

No local server on PyPI accepts Hub uploads (hf-local-hub 3.0.0's wheel lacks the Go server it
starts; olah is a read-only mirror), so the upload side is the narrowest fake: ``HfApi``'s
``create_repo``, ``list_repo_files``, ``create_commit`` and ``add_space_variable`` keep the repos in
memory, every byte of each commit decided by the real code. The download side is real: the model
repos just pushed are served by olah on loopback, and the deployed Space's own files (its
``tumor_ai`` copy and README front matter, with ``SPACE_ID`` set) choose and load them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import git_commit, start_olah, wait_for_http

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

ROOT = Path(__file__).resolve().parent.parent
REPOS = ["tester/tumor-ai-cnn", "tester/tumor-ai-vgg16"]

LOAD_ON_THE_SPACE = """
import json
from tumor_ai.model.folder import load_model
from tumor_ai.model.sources import ROOT, model_sources
sources = model_sources()
names = {slot: load_model(source)[1].name for slot, source in sources.items()}
print("RESULT " + json.dumps({"root": str(ROOT), "sources": sources, "names": names}))
"""


class FakeHub:
    """Repos in memory, keyed by (type, id): what the Hub would hold after each call."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}
        self.created: dict[tuple[str, str], dict] = {}
        self.variables: dict[str, dict[str, str]] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from huggingface_hub import HfApi

        hub = self

        def create_repo(api, repo_id, *, repo_type=None, exist_ok=False, **kwargs):
            key = (repo_type or "model", repo_id)
            hub.created.setdefault(key, kwargs)
            hub.repos.setdefault(key, {})
            return f"https://hub.test/{repo_id}"

        def list_repo_files(api, repo_id, *, repo_type=None, **kwargs):
            return sorted(hub.repos[(repo_type or "model", repo_id)])

        def create_commit(api, repo_id, operations, *, commit_message, repo_type=None, **kwargs):
            files = hub.repos[(repo_type or "model", repo_id)]
            for operation in operations:
                if type(operation).__name__ == "CommitOperationDelete":
                    del files[operation.path_in_repo]
                    continue
                source = operation.path_or_fileobj
                files[operation.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
            return type("Commit", (), {"commit_url": f"https://hub.test/{repo_id}/commit/{len(files)}"})()

        def add_space_variable(api, repo_id, key, value, **kwargs):
            hub.variables.setdefault(repo_id, {})[key] = value

        for name, method in (
            ("create_repo", create_repo),
            ("list_repo_files", list_repo_files),
            ("create_commit", create_commit),
            ("add_space_variable", add_space_variable),
        ):
            monkeypatch.setattr(HfApi, name, method)

    def write(self, key: tuple[str, str], folder: Path) -> Path:
        """The repo's files on disk, as a clone would hold them."""
        for name, content in self.repos[key].items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return folder


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    hub = FakeHub()
    hub.install(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    return hub


@pytest.fixture
def models(slot_models, tmp_path) -> Path:
    """The small test models laid out as a models/ folder (cnn/, vgg16/)."""
    for name, folder in slot_models.items():
        shutil.copytree(folder, tmp_path / "models" / name)
    return tmp_path / "models"


def _serve_with_olah(hub: FakeHub, base: Path) -> tuple[subprocess.Popen, str]:
    """olah on a free port, offline, serving the pushed model repos from git mirrors."""
    for repo in REPOS:
        git_commit(hub.write(("model", repo), base / "mirrors" / "models" / repo))
    return start_olah(base)


def _load_on_the_space(hub: FakeHub, deployed: Path, tmp_path: Path) -> dict:
    """Run the deployed files as the Space would (``SPACE_ID`` set), against olah serving the pushed repos."""
    process, endpoint = _serve_with_olah(hub, tmp_path / "hub")
    try:
        wait_for_http(f"{endpoint}/api/models/{REPOS[0]}/revision/main", process, timeout=60)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("TUMOR_AI_", "HF_HUB_OFFLINE"))}
        env.update({"PYTHONPATH": str(deployed), "SPACE_ID": "tester/tumor-ai", "HF_ENDPOINT": endpoint})
        env["HF_HUB_CACHE"] = str(tmp_path / "cache")
        command = [sys.executable, "-c", LOAD_ON_THE_SPACE]
        run = subprocess.run(command, cwd=deployed, env=env, capture_output=True, text=True, timeout=120)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])


def _front_matter(readme: bytes) -> dict:
    from huggingface_hub import SpaceCard

    return SpaceCard(readme.decode()).data.to_dict()


def test_publish_space_pushes_both_models_and_a_space_that_loads_them(fake_hub, models, tmp_path, capsys):
    from huggingface_hub import SpaceCard

    from training.publish import main

    fake_hub.repos[("space", "tester/tumor-ai")] = {"tumor_ai/removed.py": b"", "notes.txt": b"kept"}  # an earlier deploy
    main(["--space", "tester/tumor-ai", "--models", str(models)])
    assert "deployed the app to" in capsys.readouterr().out
    assert fake_hub.created[("space", "tester/tumor-ai")]["space_sdk"] == "gradio"
    for repo in REPOS:
        assert {"config.json", "model.weights.h5", "tumor_ai.json", "README.md"} <= set(fake_hub.repos[("model", repo)])

    space = fake_hub.repos[("space", "tester/tumor-ai")]
    assert {"app.py", "requirements.txt", ".gitattributes", "README.md"} <= set(space)
    assert {"tumor_ai/__init__.py", "tumor_ai/model/sources.py", "tumor_ai/publish/space.py"} <= set(space)
    assert "tumor_ai/removed.py" not in space and "notes.txt" in space
    assert not any("__pycache__" in name or name.startswith(("models/", "tests/", "training/")) for name in space)
    assert b"*.keras filter=lfs" in space[".gitattributes"] and b"!filter" not in space[".gitattributes"]

    front, ours = _front_matter(space["README.md"]), SpaceCard.load(ROOT / "README.md").data.to_dict()
    assert front["models"] == REPOS and front["preload_from_hub"] == REPOS
    assert {key: value for key, value in front.items() if key not in ("models", "preload_from_hub")} == {
        key: value for key, value in ours.items() if key not in ("models", "preload_from_hub")
    }

    deployed = fake_hub.write(("space", "tester/tumor-ai"), tmp_path / "space")
    result = _load_on_the_space(fake_hub, deployed, tmp_path)
    assert result["root"] == str(deployed)  # the Space's own copy of the package read the Space's README
    assert result["sources"] == {"cnn": f"hf://{REPOS[0]}", "vgg16": f"hf://{REPOS[1]}"}
    assert result["names"] == {"cnn": "cnn", "vgg16": "vgg16"}


def test_private_models_are_named_in_space_variables_not_preloaded(fake_hub, models):
    from tumor_ai.publish.space import deploy_space

    deployment = deploy_space("tester/brains", models, {"cnn": "tester/mine-cnn"}, private=True)
    assert deployment.model_repos == {"cnn": "tester/mine-cnn", "vgg16": "tester/tumor-ai-vgg16"}
    assert fake_hub.created[("space", "tester/brains")]["private"] is True
    assert fake_hub.variables["tester/brains"] == {
        "TUMOR_AI_CNN": "hf://tester/mine-cnn",
        "TUMOR_AI_VGG16": "hf://tester/tumor-ai-vgg16",
    }
    front = _front_matter(fake_hub.repos[("space", "tester/brains")]["README.md"])
    assert front["models"] == ["tester/mine-cnn", "tester/tumor-ai-vgg16"] and "preload_from_hub" not in front


@pytest.mark.parametrize(
    "arguments,expected",
    [
        (["--model-repo", "cnn=tester/brain"], "the cnn repo must look like USER/NAME-cnn"),
        (["--model-repo", "resnet=tester/x-resnet"], "unknown model 'resnet'"),
        (["--models", "/nonexistent"], "no model at /nonexistent/cnn"),
        (["--token-missing"], "no Hugging Face token"),
    ],
)
def test_space_errors_are_one_sentence_and_push_nothing(fake_hub, models, monkeypatch, capsys, arguments, expected):
    from training.publish import main

    if arguments == ["--token-missing"]:
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
        arguments = []
    with pytest.raises(SystemExit) as exit_info:
        main(["--space", "tester/tumor-ai", "--models", str(models), *arguments])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error and error.count("\n") == 1
    assert fake_hub.repos == {}
