"""Hub round trip with no network: olah serves git mirrors on loopback, a pre-filled cache serves offline.

Download: a real Hub-compatible server (olah, offline mode, repos from ``mirrors-path``) with
``HF_ENDPOINT`` pointing at it, in fresh processes so huggingface_hub reads the environment.
Upload: nothing local accepts Hub uploads, so ``HfApi.create_repo``/``create_commit`` (the
narrowest point: every byte of the commit is decided by then) are replaced and inspected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, git_commit, start_olah, wait_for_http

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys, keras
from tumor_ai.core.inference import Predictor
result = {}
for name in sys.argv[1:]:
    predictor = Predictor.from_source(f"hf://tester/tumor-ai-{name}@main")
    result[name] = {"labels": predictor.labels, "cam_layer": predictor.metadata.cam_layer}
result["plain_keras"] = keras.saving.load_model("hf://tester/tumor-ai-cnn").name
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def hub(slot_models, tmp_path_factory):
    """olah on a free port serving tester/tumor-ai-{cnn,vgg16} from git mirrors (branch main)."""
    from tumor_ai.publish.hub import stage_repository

    base = tmp_path_factory.mktemp("hub")
    for name, folder in slot_models.items():
        repo = base / "mirrors" / "models" / "tester" / f"tumor-ai-{name}"
        repo.mkdir(parents=True)
        stage_repository(folder, repo, f"tester/tumor-ai-{name}")
        git_commit(repo)
    process, endpoint = start_olah(base)
    try:
        wait_for_http(f"{endpoint}/api/models/tester/tumor-ai-cnn/revision/main", process, timeout=60)
    except RuntimeError:
        process.kill()
        raise
    yield {"endpoint": endpoint, "base": base}
    process.terminate()
    process.wait(timeout=20)


def _run(env_extra: dict, *args: str, script: str = SCRIPT) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **env_extra})
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def _result(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr[-3000:]
    line = next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_download_through_a_hub_server_then_offline_from_cache(hub, tmp_path):
    cache = tmp_path / "hf-cache"
    online = _result(_run({"HF_ENDPOINT": hub["endpoint"], "HF_HUB_CACHE": str(cache)}, "cnn", "vgg16"))
    assert online["cnn"]["labels"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert online["plain_keras"] == "tumor_cnn"
    assert (cache / "models--tester--tumor-ai-cnn").is_dir()
    offline = _result(_run({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}, "cnn"))
    assert offline["cnn"] == online["cnn"]


def test_unreachable_hub_falls_back_to_local_models(slot_models, tmp_path):
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO)\n"
        "from tumor_ai.core.inference import load_predictors\n"
        f"fallbacks = {{'cnn': {str(slot_models['cnn'])!r}}}\n"
        "predictors, used, why = load_predictors({'cnn': 'hf://tester/missing'}, fallbacks, require_mri_check=False)\n"
        "assert why['cnn'].startswith('hf://tester/missing could not be loaded (')\n"
        "print('RESULT ' + __import__('json').dumps(used))\n"
    )
    process = _run({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "empty")}, script=script)
    assert _result(process) == {"cnn": str(slot_models["cnn"])}
    assert "hf://tester/missing could not be loaded" in process.stderr and "falling back" in process.stderr


def test_app_runs_on_hub_sources(hub, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "HF_ENDPOINT": hub["endpoint"],
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "TUMOR_AI_CNN": "hf://tester/tumor-ai-cnn",
        "TUMOR_AI_VGG16": "hf://tester/tumor-ai-vgg16@main",
    }
    log = tmp_path / "app.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--allow-no-mri-check"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process, log=log)
        from gradio_client import Client, handle_file

        # The page comes before TensorFlow: on a loaded machine its import can hold the server for seconds at a time.
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, httpx_kwargs={"timeout": 120})
        example = handle_file(str(ROOT / "tumor_ai" / "examples" / "glioma.jpg"))
        for name in ("vgg16", "cnn"):  # the default loads first; asking the other waits for it too
            details = client.predict(example, name, 0.4, "top", api_name="/predict")[-1]
            assert details["model"] == name
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    assert "loaded cnn from hf://tester/tumor-ai-cnn" in text and "loaded vgg16 from hf://tester/tumor-ai-vgg16@main" in text


def test_publish_sends_the_keras_layout_card_and_message(slot_models, monkeypatch):
    from huggingface_hub import HfApi

    from tumor_ai.publish.hub import push_model

    sent = {}

    def fake_create_repo(self, repo_id, **kwargs):
        sent["repo"] = (repo_id, kwargs.get("private"))

    def fake_create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        sent["message"] = commit_message
        sent["files"] = {}
        for operation in operations:
            source = operation.path_or_fileobj
            sent["files"][operation.path_in_repo] = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "create_commit", fake_create_commit)
    url = push_model(slot_models["cnn"], "someone/tumor-ai-test", private=True, commit_message="first upload", token="hf_fake")
    assert url.endswith("/commit/abc")
    assert sent["repo"] == ("someone/tumor-ai-test", True) and sent["message"] == "first upload"
    assert {"config.json", "metadata.json", "model.weights.h5", "tumor_ai.json", "README.md"} <= set(sent["files"])
    card = sent["files"]["README.md"].decode() if isinstance(sent["files"]["README.md"], bytes) else sent["files"]["README.md"]
    front = card.split("---")[1]
    for line in (
        "library_name: keras",
        "pipeline_tag: image-classification",
        "license: mit",
        "- masoudnickparvar/brain-tumor-mri-dataset",
    ):
        assert line in front


@pytest.mark.parametrize(
    "token,error,expected",
    [
        (None, None, "no Hugging Face token"),
        ("hf_x", "forbidden", "no write permission"),
        ("hf_x", "network", "cannot reach the Hugging Face Hub"),
    ],
)
def test_publish_errors_are_sentences(slot_models, monkeypatch, capsys, token, error, expected):
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from training.publish import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: token)

    def failing(self, *args, **kwargs):
        if error == "forbidden":
            request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
            raise HfHubHTTPError("403 Forbidden", response=httpx2.Response(403, request=request))
        raise httpx2.ConnectError("connection refused")

    monkeypatch.setattr(HfApi, "create_repo", failing)
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(slot_models["cnn"]), "--repo", "someone/x"])
    assert exit_info.value.code == 1
    assert expected in capsys.readouterr().err


def test_sources_follow_flag_then_environment_then_the_space_then_models(monkeypatch):
    from tumor_ai.model.sources import MODELS_DIR, model_sources

    monkeypatch.delenv("TUMOR_AI_CNN", raising=False)
    monkeypatch.delenv("TUMOR_AI_VGG16", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert model_sources() == {"cnn": str(MODELS_DIR / "cnn"), "vgg16": str(MODELS_DIR / "vgg16")}
    monkeypatch.setenv("SPACE_ID", "someone/tumor-ai")  # on a Space: the repos README.md preloads
    assert model_sources() == {"cnn": "hf://tumor-ai/tumor-ai-cnn", "vgg16": "hf://tumor-ai/tumor-ai-vgg16"}
    monkeypatch.setenv("TUMOR_AI_CNN", "hf://me/cnn@v2")
    assert model_sources({"vgg16": "models/vgg16"}) == {"cnn": "hf://me/cnn@v2", "vgg16": "models/vgg16"}


@pytest.mark.parametrize("source", ["hf://justaname", "hf://tester/missing", "hf://tester/tumor-ai-cnn@no-such-revision"])
def test_a_mistyped_hub_source_falls_back_and_the_page_says_why(source, slot_predictors, slot_models, monkeypatch, tmp_path):
    from tumor_ai.app.ui import build_app
    from tumor_ai.core.inference import load_predictors

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    predictors, used, reasons = load_predictors({"cnn": source}, {"cnn": str(slot_models["cnn"])}, require_mri_check=False)
    assert used == {"cnn": str(slot_models["cnn"])} and reasons["cnn"].startswith(f"{source} could not be loaded (")
    app = build_app({**predictors, "vgg16": slot_predictors["vgg16"]}, {**used}, reasons)
    texts = [str(component.get("props", {}).get("value")) for component in app.config["components"]]
    banner = next(text for text in texts if "Not the requested models" in text)
    assert f"because {source} could not be loaded" in banner


def test_a_vgg16_card_carries_the_imagenet_licence_and_base_model():
    from training.networks import build_cnn, build_vgg16
    from tumor_ai.publish.card import front_matter

    vgg16 = front_matter(build_vgg16(["a", "b"], input_size=(32, 32), weights=None)[1])
    cnn = front_matter(build_cnn(["a", "b"], input_size=(32, 32), filters=(4,))[1])
    assert "license: cc-by-4.0" in vgg16 and "base_model: keras/vgg_16_imagenet" in vgg16
    assert "license: mit" in cnn and "base_model" not in cnn
