"""The page before TensorFlow: ``tumor-ai serve`` serves the page within seconds while the models load behind it.

The page is built from what each model's folder says of it (``tumor_ai.core.inference.ModelFiles``: its metadata and
its not-an-MRI check, read without TensorFlow). A ``ModelLoader`` then imports TensorFlow, loads and traces each model in
a thread of its own. Until a model has loaded, a ``PendingPredictor`` stands in for it in the page's dict of predictors:
what the page is built from (metadata, labels, source, folder, the check) it has at once; anything else (a forward
pass) waits for that model, at most ``WAIT_SECONDS``, while the page says "Loading the models…". Once loaded, the
``Predictor`` replaces the stand-in in that same dict, so the handlers, the tools and the Assistant (which all hold the
dict) reach it with nothing in between.

A request that comes first waits rather than being told to come back: a person pressed Predict, and an API or MCP client
called ``/predict``, to get the answer, and Gradio's queue keeps the call open while it waits. Only a wait past
``WAIT_SECONDS`` ends in the "still loading" sentence. A load that fails is one sentence (``wording.models_failed``) on
the page and in every answer that needs that model; the page keeps serving, and a model that did load keeps answering.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from tumor_ai.app.reader import ReaderError
from tumor_ai.core.inference import ModelFiles, Predictor
from tumor_ai.core.safe_text import html_text
from tumor_ai.core.wording import MODELS_LOADING, models_failed, models_still_loading

WAIT_SECONDS = 120.0  # how long a request waits for its model before it is told the models are still loading
TIMINGS_ENV = "TUMOR_AI_TIMINGS"  # a path: the start-up's timings are written there as JSON once the models are ready
log = logging.getLogger("tumor_ai.app.loading")


class NotLoadedError(ReaderError, gr.Error):
    """A request that needs a model which is not loaded (still loading, or failed), in one sentence.

    It is a ``ReaderError``, so the tools and the Assistant say it as they say any sentence the reader cannot answer,
    and a ``gr.Error``, so any other handler shows it as the page's error (and an API client gets it), never a trace.
    As a ``gr.Error`` its message is HTML-escaped, as every handler's (a pop-up renders HTML); ``str`` is the sentence.
    """

    def __init__(self, message: str):
        gr.Error.__init__(self, html_text(message), print_exception=False)
        self.args = (message,)

    def __str__(self) -> str:
        return self.args[0]


class StartupClock:
    """Seconds since the process started serving (``started``) and what each phase of the start-up took, for the log
    and for ``benchmarks/startup.py`` (the JSON file ``TUMOR_AI_TIMINGS`` names)."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started
        self.phases: dict[str, float] = {}
        self.marks: dict[str, float] = {}
        self._lock = threading.Lock()

    def phase(self, name: str, seconds: float) -> None:
        with self._lock:
            self.phases[name] = round(seconds, 3)

    def timed(self, name: str, work: Callable[[], Any]) -> Any:
        """``work()``, its duration recorded as phase ``name``."""
        began = time.perf_counter()
        try:
            return work()
        finally:
            self.phase(name, time.perf_counter() - began)

    def mark(self, name: str) -> float:
        """Record that ``name`` happened now; returns the seconds since the start."""
        since = round(time.perf_counter() - self.started, 3)
        with self._lock:
            self.marks[name] = since
        return since

    def write(self, path: str | None = None) -> None:
        """The timings as JSON at ``path`` (default: ``TUMOR_AI_TIMINGS``; nothing when neither is set)."""
        path = path or os.environ.get(TIMINGS_ENV)
        if not path:
            return
        with self._lock:
            record = {"phases_s": dict(self.phases), "since_start_s": dict(self.marks)}
        with open(path, "w") as file:
            json.dump(record, file, indent=1)


class PendingPredictor:
    """A model not loaded yet, standing in for its ``Predictor``: its metadata, labels, source, folder and not-an-MRI
    check now; any other attribute (``predict_one``, ``explain``, ...) waits for the loaded model (``ModelLoader.ready``)
    and is the loaded model's."""

    def __init__(self, name: str, files: ModelFiles, loader: ModelLoader):
        self.key = name
        self.metadata = files.metadata
        self.labels = files.labels
        self.source = files.source
        self.folder = files.folder
        self.mri_check = files.mri_check
        self._loader = loader

    @property
    def name(self) -> str:
        return self.metadata.name

    def __getattr__(self, attribute: str):
        if attribute.startswith("_"):  # copy, pickle and the like probe these: never wait for them
            raise AttributeError(attribute)
        return getattr(self._loader.ready(self.key), attribute)

    def __repr__(self) -> str:
        return f"PendingPredictor({self.key!r}, {self.source!r})"


def load_files(files: ModelFiles, precision: str, clock: StartupClock, name: str, engine: str = "tensorflow") -> Predictor:
    """A model loaded from its files and traced, each step timed; concurrent requests share its forward passes.

    With the ``onnx`` engine and an export of these weights already cached, ONNX Runtime serves it from the first
    answer (its tail traced, TensorFlow's whole-model function never); without one, TensorFlow serves it first and
    ``ModelLoader`` exports it once every model is ready (``export_engines``), so no one waits for an export.
    """
    predictor = clock.timed(f"{name} load", lambda: Predictor.from_files(files, warm_up=False, precision=precision))
    if engine != "onnx" or not clock.timed(f"{name} onnx", lambda: predictor.use_onnx(export=False)):
        clock.timed(f"{name} warm-up", predictor.warm_up)
    predictor.share_passes()  # several users at once: one forward pass for their slices
    return predictor


def import_tensorflow() -> None:
    """TensorFlow and Keras imported, and their thread pools set for a small CPU box (before any model is loaded)."""
    import keras  # noqa: F401 - imported here, timed, and not inside the first model's load
    import tensorflow  # noqa: F401

    from tumor_ai.core.inference import configure_threads

    configure_threads()


class ModelLoader:
    """Loads the served models in a thread while the page is served; what a request waits on, and what the page says.

    ``predictors`` is the dict the page is built over: a ``PendingPredictor`` per model until it has loaded, then its
    ``Predictor``. ``load(name, files)`` loads one model (``load_files`` by default, after ``import_tensorflow``); tests
    give their own, and may run ``run`` in their own thread or not at all.
    """

    def __init__(
        self,
        files: dict[str, ModelFiles],
        precision: str = "auto",
        load: Callable[[str, ModelFiles], Any] | None = None,
        wait_seconds: float = WAIT_SECONDS,
        clock: StartupClock | None = None,
        engine: str = "tensorflow",
    ):
        self.files = files
        self.engine = engine  # resolved: "tensorflow" or "onnx" (tumor_ai.core.engine.resolve_engine)
        self.clock = clock or StartupClock()
        self.wait_seconds = wait_seconds
        self.predictors: dict[str, Any] = {name: PendingPredictor(name, model, self) for name, model in files.items()}
        self.error: str | None = None  # the one sentence of a failed load
        self._loaded: set[str] = set()
        self._events = {name: threading.Event() for name in files}
        self._custom_load = load is not None
        self._load = load or (lambda name, model: load_files(model, precision, self.clock, name, engine))
        self.thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        """Load in a thread of its own (a daemon: stopping the app never waits for it)."""
        self.thread = threading.Thread(target=self.run, name="tumor-ai model loader", daemon=True)
        self.thread.start()
        return self.thread

    def run(self) -> None:
        """Load every model, each available as soon as it is; a failure stops the loading in one sentence.

        The last model named loads first: it is the one the page's tabs start on (``ui``: ``names[-1]``), so a
        person's first Predict waits for one model, not for all of them.
        """
        name = None
        try:
            if not self._custom_load:
                self.clock.timed("tensorflow import", import_tensorflow)
            for name, model in reversed(list(self.files.items())):
                self.predictors[name] = self._load(name, model)
                self._loaded.add(name)
                self._events[name].set()
                ready = self.clock.mark(f"{name} ready")
                log.info("loaded %s from %s (%s), %.1f s after start", name, model.source, self._computed_with(name), ready)
        except Exception as error:  # noqa: BLE001 - any failure: one sentence on the page, and the page keeps serving
            self.failed(error, name)
        finally:
            for event in self._events.values():
                event.set()
            if self.error is None:
                log.info("start-up: models ready %.1f s after start (%s)", self.clock.mark("models ready"), self._phases())
            self.clock.write()
        if self.error is None and not self._custom_load:
            self.export_engines()

    def export_engines(self) -> None:
        """With the ``onnx`` engine, export each model TensorFlow is still serving (no cached export) and hand it to
        ONNX Runtime; the answers meanwhile come from TensorFlow, the same classes and maps. A failed export is
        logged and TensorFlow keeps serving: the engine is a speed, not a result."""
        if self.engine != "onnx":
            return
        for name in self._loaded:
            predictor = self.predictors[name]
            if getattr(predictor, "engine", "onnx") == "onnx":
                continue
            try:
                self.clock.timed(f"{name} onnx export", predictor.use_onnx)
                log.info("%s: ONNX Runtime serves it from now on (%s)", name, self._computed_with(name))
            except Exception as error:  # noqa: BLE001 - any exporter failure: TensorFlow keeps serving, said in the log
                log.warning("%s: the ONNX export failed (%s: %s); TensorFlow keeps serving it", name, type(error).__name__, error)

    def failed(self, error: Exception, name: str | None) -> None:
        """Record the failure's one sentence; the log gets the sentence (and a trace only for a failure nobody foresaw)."""
        from tumor_ai.model.folder import shown_source
        from tumor_ai.model.metadata import ModelSourceError

        if isinstance(error, ModelSourceError):
            reason = str(error)
            for model in self.files.values():  # no machine paths on a public page: a folder as the page names it
                for path in (str(model.folder), model.source):
                    reason = reason.replace(path, shown_source(model.source))
        else:
            reason = f"{type(error).__name__} while loading the {name or 'first'} model (the app's log has the details)"
            log.error("loading the %s model failed", name, exc_info=error)
        self.error = models_failed(reason)
        self.clock.mark("models failed")
        log.warning("%s", self.error)

    def ready(self, name: str):
        """The loaded model ``name``: at once when it is loaded, else after waiting for it (the page is told), at most
        ``wait_seconds``; a model that failed, or one still loading after the wait, is a ``NotLoadedError`` sentence."""
        event = self._events[name]
        if not event.is_set():
            tell_the_page(MODELS_LOADING)
            if not event.wait(self.wait_seconds):
                raise NotLoadedError(models_still_loading(self.wait_seconds))
        if name not in self._loaded:
            raise NotLoadedError(self.error or models_still_loading(self.wait_seconds))
        return self.predictors[name]

    @property
    def settled(self) -> bool:
        """Whether the loading is over: every model loaded, or the failure said."""
        return all(event.is_set() for event in self._events.values())

    def status(self) -> str:
        """What the page says of the models: the loading sentence, the failure's sentence, or nothing once loaded."""
        if self.error:
            return self.error
        return "" if self.settled else MODELS_LOADING

    def _computed_with(self, name: str) -> str:
        """The precision and the engine a loaded model computes with, for the log."""
        predictor = self.predictors[name]
        return f"{getattr(predictor, 'precision', '?')}, {getattr(predictor, 'engine', '?')}"

    def _phases(self) -> str:
        return ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.clock.phases.items())


def tell_the_page(message: str) -> None:
    """``message`` as a notice on the page of the request this thread serves (an API client ignores it); nothing
    outside a request (a test, a script)."""
    from gradio.context import LocalContext

    if LocalContext.blocks.get(None) is not None and LocalContext.event_id.get(None) is not None:
        gr.Info(message, duration=8)
