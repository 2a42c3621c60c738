"""The page before TensorFlow (issue 42): the page is built from the models' files without TensorFlow, a request that
comes before its model has loaded waits with "Loading the models…", and a load that fails is one sentence.

No test here races a clock: the loader's thread is never started; each test runs its ``run`` itself, when it chooses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import gradio as gr
import pytest
from conftest import ROOT

from tumor_ai.core.wording import MODELS_LOADING

PAGE_WITHOUT_TENSORFLOW = """
import json, sys
from tumor_ai.app.serve import page, parse_args

app, loader = page(parse_args(["--models", "models"]))
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "torch"))
components = [block.get("props", {}) for block in app.config["components"]]
status = next(props for props in components if props.get("elem_id") == "models-status")
print(json.dumps({"heavy": heavy, "status": status.get("value"), "pending": sorted(map(repr, loader.predictors.values()))}))
"""


def test_the_page_is_built_without_importing_tensorflow():
    """What ``python app.py`` does before it serves (``serve.page``), on the shipped models, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PAGE_WITHOUT_TENSORFLOW], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["heavy"] == [], f"building the page imported {built['heavy'][:5]}"
    assert MODELS_LOADING in built["status"], "the page says the models are loading"
    assert all(text.startswith("PendingPredictor(") for text in built["pending"])


@pytest.fixture
def loader_over(slot_models):
    """A ``ModelLoader`` over the two small models' files, whose ``run`` hands over the already loaded ``slot_predictors``
    (or raises what a test gives): ``make(load=None, wait=60)``."""
    from tumor_ai.app.loading import ModelLoader
    from tumor_ai.core.inference import read_served_files

    files, _, _ = read_served_files({name: str(folder) for name, folder in slot_models.items()}, require_mri_check=False)

    def make(load, wait: float = 60.0) -> ModelLoader:
        return ModelLoader(files, load=load, wait_seconds=wait)

    return make


def test_a_request_during_loading_is_told_and_answered_once_the_model_is_ready(
    loader_over, slot_predictors, example_paths, monkeypatch
):
    from tumor_ai.app import handlers, loading
    from tumor_ai.app.ui import build_app, models_status

    told, said = threading.Event(), []

    def tell(message):
        said.append(message)
        told.set()

    monkeypatch.setattr(loading, "tell_the_page", tell)
    loader = loader_over(lambda name, files: slot_predictors[name])
    build_app(loader.predictors, loading=loader)  # the page over the stand-ins, as serve builds it
    assert models_status(loader) == f"> **{MODELS_LOADING}**" and not loader.settled
    answers = []
    request = threading.Thread(
        target=lambda: answers.append(
            handlers.predict(loader.predictors, {"path": str(example_paths["glioma"])}, "cnn", 0.5, "top", None)
        )
    )
    request.start()
    assert told.wait(120), "the request was not told that the models are loading"
    assert said == [MODELS_LOADING] and not answers, "it waits for the model, and the page is told why"
    loader.run()  # the models are loaded now
    request.join(120)
    assert answers and answers[0].details["model"] == "cnn", "the waiting request is answered by the loaded model"
    assert loader.predictors["cnn"] is slot_predictors["cnn"], "the loaded model replaces its stand-in"
    assert models_status(loader) == "" and loader.status() == "" and loader.settled


def test_a_request_that_waits_too_long_gets_one_sentence(loader_over, example_paths):
    from tumor_ai.app import handlers
    from tumor_ai.app.loading import NotLoadedError

    loader = loader_over(load=None, wait=0.0)  # never run: still loading, and no time to wait
    with pytest.raises(gr.Error) as raised:
        handlers.compare(loader.predictors, {"path": str(example_paths["glioma"])}, 0.5, None)
    assert isinstance(raised.value, NotLoadedError)
    assert raised.value.message == "The models are still loading after 0 seconds of waiting; ask again in a minute."


@pytest.mark.parametrize(
    "error,said",
    [
        ("damaged", "model.keras is damaged or incomplete and cannot be loaded (BadZipFile)"),
        ("unforeseen", "MemoryError while loading the vgg16 model (the app's log has the details)"),  # the default loads first
    ],
)
def test_a_load_that_fails_is_one_sentence_and_the_page_keeps_its_other_answers(
    error, said, loader_over, slot_models, example_paths, caplog
):
    from tumor_ai.app import handlers
    from tumor_ai.app.tools import Toolbox
    from tumor_ai.app.ui import build_app, models_status
    from tumor_ai.core.safe_text import html_text
    from tumor_ai.model.metadata import ModelSourceError

    def load(name, files):
        if error == "damaged":
            raise ModelSourceError(f"{files.folder}: model.keras is damaged or incomplete and cannot be loaded (BadZipFile).")
        raise MemoryError

    loader = loader_over(load)
    build_app(loader.predictors, loading=loader)
    loader.run()
    sentence = loader.status()
    assert sentence.startswith("The models could not be loaded, so no slice can be read") and said in sentence
    assert sentence.endswith(".") and "\n" not in sentence and ". " not in sentence, "one sentence"
    assert str(slot_models["cnn"].parent) not in sentence, "no machine path on a public page"
    assert models_status(loader) == f"> ⚠️ **{sentence}**" and loader.settled
    with pytest.raises(gr.Error) as raised:
        handlers.predict(loader.predictors, {"path": str(example_paths["glioma"])}, "cnn", 0.5, "top", None)
    assert raised.value.message == html_text(sentence) and "Traceback" not in raised.value.message
    toolbox = Toolbox(loader.predictors)
    assert "cnn" in toolbox.model_figures("cnn").text, "what needs no model still answers"
