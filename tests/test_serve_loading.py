"""`python app.py` whose model cannot be loaded: the page is served, every answer that needs the model is one sentence,
and the app keeps serving (slow: it starts the command, on the tiny test models, one of them damaged).

The page comes before TensorFlow, so this also walks the loading path of a real start: the first request may well come
while the models are still loading, and then waits for the loader's verdict (no sleep decides what it sees).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT
from gradio_client import Client, handle_file
from helpers import free_port, wait_for_http

pytestmark = pytest.mark.slow


def test_a_model_that_cannot_be_loaded_is_one_sentence_and_the_page_keeps_serving(slot_models, example_paths, tmp_path):
    folder = tmp_path / "cnn"
    shutil.copytree(slot_models["cnn"], folder)
    (folder / "model.keras").write_bytes((folder / "model.keras").read_bytes()[:5000])
    port, log, timings = free_port(), tmp_path / "console.log", tmp_path / "timings.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TUMOR_AI_TIMINGS": str(timings)}
    env.pop("SPACE_ID", None)
    command = [sys.executable, "app.py", "--port", str(port), "--allow-no-mri-check"]
    command += ["--cnn", str(folder), "--vgg16", str(slot_models["vgg16"])]
    with log.open("w") as console:
        process = subprocess.Popen(command, cwd=ROOT, stdout=console, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log=log)
        # TensorFlow's import, behind the page, can hold the server for seconds at a time on a loaded machine.
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
        with pytest.raises(Exception, match="The models could not be loaded, so no slice can be read") as raised:
            client.predict(handle_file(str(example_paths["glioma"])), "cnn", 0.5, "top", api_name="/predict")
        assert "model.keras is damaged or incomplete and cannot be loaded" in str(raised.value)
        assert str(tmp_path) not in str(raised.value), "no machine path on a public page"
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and process.poll() is None, "the app keeps serving"
        recorded = json.loads(timings.read_text())  # written once the loading was over
        assert "models failed" in recorded["since_start_s"] and "page served" in recorded["since_start_s"]
        assert recorded["since_start_s"]["page served"] < recorded["since_start_s"]["models failed"], "the page came first"
    finally:
        process.terminate()
        process.wait(timeout=30)
    console = log.read_text()
    assert "The models could not be loaded" in console and "Traceback" not in console, console[-3000:]
