"""The tools as the app's public endpoints: named for ``gradio_client``, listed as MCP tools.

Gradio names an MCP tool after its function and describes it from the docstring and type hints,
so each endpoint is a small typed function with an ``Args:`` block over a ``tumor_ai.app.tools.Toolbox``
method. Files (a slice, or several for a batch) come in through ``gr.File`` inputs, so MCP clients
may send a URL or a base64 data URL and Gradio fetches it; pictures go out as one image file (the
overlays side by side), which MCP returns as an image beside the text. The page's own events are
kept out of the MCP list (``page_only``): an agent sees only these tools.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr
import numpy as np

from tumor_ai.app.tools import Toolbox, ToolError, ToolResult, read_slice
from tumor_ai.core.safe_text import html_text
from tumor_ai.core.wording import tools_busy

BATCH_SLOTS = 8  # summarise_batch's file inputs; each may be a .zip
TOOL_NAMES = ("classify_slice", "compare_models", "explain_class", "summarise_batch", "model_figures", "explain_grad_cam")


def page_only(fn: Callable) -> Callable:
    """Mark a page event's function so Gradio's MCP server does not list it as a tool (it stays in the API)."""
    fn._mcp_type = "page"  # gradio.mcp lists a function as a tool unless its _mcp_type says otherwise
    return fn


def side_by_side(result: ToolResult) -> str | None:
    """The result's pictures as one image file in Gradio's cache (the MCP answer carries one image)."""
    from tumor_ai.app.cache import cache_picture

    if not result.pictures:
        return None
    height = max(picture.shape[0] for picture in result.pictures)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 8), (0, 0))) for p in result.pictures]
    return cache_picture(np.concatenate(padded, axis=1)[:, :-8], "tool.jpg")


class ToolGate:
    """The page's limits for tool calls, which bypass Gradio's queue (see ``register_tools``): at most ``running()``
    calls at once, at most ``waiting()`` more waiting for a turn (``--queue-size``; None: no bound), the rest refused
    at once in one sentence. Both limits are read from the page's own settings at the first call."""

    def __init__(self, running: Callable[[], int], waiting: Callable[[], int | None]):
        self._running, self._waiting = running, waiting
        self._slots: threading.BoundedSemaphore | None = None
        self._lock, self._inside = threading.Lock(), 0
        self.limits: tuple[int, int | None] | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            if self._slots is None:
                self.limits = (max(1, self._running()), self._waiting())
                self._slots = threading.BoundedSemaphore(self.limits[0])
            running, waiting = self.limits
            if waiting is not None and self._inside >= running + waiting:
                raise ToolError(tools_busy(self._inside - running))
            self._inside += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self._inside -= 1


UNBOUNDED = ToolGate(lambda: 4, lambda: None)  # tool functions used outside an app (tests, scripts)


def _answer(run: Callable[[], ToolResult], gate: ToolGate = UNBOUNDED) -> ToolResult:
    try:
        with gate.turn():
            return run()
    except ToolError as error:
        raise gr.Error(html_text(str(error)), print_exception=False) from None


def caller_gone(request: gr.Request | None) -> Callable[[], bool]:
    """Whether the HTTP caller of this call has disconnected, asked from the worker thread a tool runs in (Gradio runs
    a plain function in an anyio worker thread); always False where that cannot be asked."""
    raw = getattr(request, "request", None)
    if raw is None or not hasattr(raw, "is_disconnected"):
        return lambda: False

    def gone() -> bool:
        import anyio.from_thread

        try:
            return bool(anyio.from_thread.run(raw.is_disconnected))
        except Exception:  # not in a worker thread, or the request is done: nobody to ask
            return False

    return gone


def tool_functions(toolbox: Toolbox, model_gate: ToolGate = UNBOUNDED, batch_gate: ToolGate = UNBOUNDED) -> dict[str, Callable]:
    """One typed, documented function per tool, named as the tool (the MCP name comes from ``__name__``); the model
    tools wait for ``model_gate``, ``summarise_batch`` for ``batch_gate`` (the page's Predict and Batch limits)."""
    default = toolbox.names[-1]

    def classify_slice(image: str, model: str = default) -> tuple[str, str | None]:
        """Classify one brain MRI slice with one model: its class, calibrated confidence, the classes still plausible
        at 95%, and a Grad-CAM overlay of where it found the evidence. Research and teaching only, never a diagnosis.

        Args:
            image: the slice, as a URL or an uploaded file (JPG, PNG, BMP, TIFF, WebP or DICOM).
            model: which model reads it.
        Returns:
            The reading as text, and the overlay image.
        """
        result = _answer(lambda: toolbox.classify_slice(read_slice(image), model), model_gate)
        return result.text, side_by_side(result)

    def compare_models(image: str) -> tuple[str, str | None]:
        """Ask every model about one brain MRI slice: each one's class and confidence, whether they agree, which is
        surer, and their Grad-CAM overlays side by side. Research and teaching only, never a diagnosis.

        Args:
            image: the slice, as a URL or an uploaded file (JPG, PNG, BMP, TIFF, WebP or DICOM).
        Returns:
            The comparison as text, and the overlays side by side.
        """
        result = _answer(lambda: toolbox.compare_models(read_slice(image)), model_gate)
        return result.text, side_by_side(result)

    def explain_class(image: str, label: str, model: str = default) -> tuple[str, str | None]:
        """Show where one model found evidence for a class you name in one brain MRI slice (its Grad-CAM for that
        class), with the probability it gives that class.

        Args:
            image: the slice, as a URL or an uploaded file (JPG, PNG, BMP, TIFF, WebP or DICOM).
            label: the class whose evidence to show.
            model: which model.
        Returns:
            The explanation as text, and the overlay for that class.
        """
        result = _answer(lambda: toolbox.explain_class(read_slice(image), label, model), model_gate)
        return result.text, side_by_side(result)

    def summarise_batch(
        file1: str,
        file2: str | None = None,
        file3: str | None = None,
        file4: str | None = None,
        file5: str | None = None,
        file6: str | None = None,
        file7: str | None = None,
        file8: str | None = None,
        request: gr.Request = None,
    ) -> str:
        """Run every model over many brain MRI slices (or .zip files of them) and count each model's classes and
        the slices on which the models disagree.

        Args:
            file1: a slice or a .zip of slices, as a URL or an uploaded file.
            file2: optional, another slice or .zip.
            file3: optional, another slice or .zip.
            file4: optional, another slice or .zip.
            file5: optional, another slice or .zip.
            file6: optional, another slice or .zip.
            file7: optional, another slice or .zip.
            file8: optional, another slice or .zip (more slices: put them in a .zip).
        Returns:
            The summary as text.
        """
        files = [path for path in (file1, file2, file3, file4, file5, file6, file7, file8) if path]
        return _answer(lambda: toolbox.summarise_batch(files, stop=caller_gone(request)), batch_gate).text

    def model_figures(model: str = default, label: str = "") -> str:
        """A model's figures on its held-out validation split: accuracy, macro-F1, each class's recall and
        precision, how often its Grad-CAM points at the tumour, and its prediction sets' coverage.

        Args:
            model: which model.
            label: optional, one class to report on (empty for all).
        Returns:
            The figures as text.
        """
        return _answer(lambda: toolbox.model_figures(model, label), model_gate).text

    def explain_grad_cam() -> str:
        """What a Grad-CAM overlay shows, in plain words, and how often each served model's map lies on the tumour.

        Returns:
            The explanation as text.
        """
        return _answer(toolbox.explain_grad_cam, model_gate).text

    tools = (classify_slice, compare_models, explain_class, summarise_batch, model_figures, explain_grad_cam)
    functions = {fn.__name__: fn for fn in tools}
    _name_the_choices(functions, toolbox)
    return functions


def _name_the_choices(functions: dict[str, Callable], toolbox: Toolbox) -> None:
    """Each tool's ``Args:`` lists the models and classes this app serves: an agent reads them there, not in a schema."""
    models = ", ".join(f'"{name}"' for name in toolbox.names)
    labels = ", ".join(f'"{label}"' for label in toolbox.labels)
    for name in ("classify_slice", "compare_models", "explain_class", "model_figures"):
        fn = functions[name]
        fn.__doc__ = fn.__doc__.replace("which model reads it.", f"which model reads it: one of {models}.").replace(
            "which model.", f"which model: one of {models}."
        )
    explain_class, model_figures = functions["explain_class"], functions["model_figures"]
    explain_class.__doc__ = explain_class.__doc__.replace("the class whose evidence to show.", f"one of {labels}.")
    model_figures.__doc__ = model_figures.__doc__.replace("one class to report on", f"one of {labels}")


def page_limits(app: gr.Blocks, api_name: str) -> tuple[Callable[[], int], Callable[[], int | None]]:
    """How many of the page's ``api_name`` events run at once, and how many requests its queue holds (``--queue-size``),
    read when asked: the queue is set after the app is built (``tumor_ai.app.serve``)."""

    def queue():
        return getattr(app, "_queue", None)

    def running() -> int:
        limit = next(fn.concurrency_limit for fn in app.fns.values() if fn.api_name == api_name)
        if limit == "default":
            limit = getattr(queue(), "default_concurrency_limit", 1)
        return limit or 1

    return running, lambda: getattr(queue(), "max_size", None)


def register_tools(toolbox: Toolbox, app: gr.Blocks | None = None) -> dict[str, ToolGate]:
    """Inside a ``gr.Blocks``: the tools as public endpoints, on inputs and outputs the page does not show, under the
    limits of ``app``'s page (its Predict event's and its Batch event's); the gates, by the page event they follow."""
    gates = {name: ToolGate(*page_limits(app, name)) if app is not None else UNBOUNDED for name in ("predict", "batch")}
    functions = tool_functions(toolbox, gates["predict"], gates["batch"])
    with gr.Column(visible=False):
        image = gr.File(label="image", file_count="single", type="filepath")
        # One single-file input per slot: Gradio's MCP schema for a list of files names a "$defs" entry that is
        # not at the schema's root (so a strict client refuses every call), and its URL-to-file step skips list items.
        files = [gr.File(label=f"file{slot}", file_count="single", type="filepath") for slot in range(1, BATCH_SLOTS + 1)]
        model = gr.Dropdown(toolbox.names, value=toolbox.names[-1], label="model")
        label = gr.Dropdown(toolbox.labels, value=toolbox.labels[0], label="label", allow_custom_value=True)
        optional_label = gr.Dropdown(["", *toolbox.labels], value="", label="label", allow_custom_value=True)
        text, picture = gr.Markdown(), gr.Image(type="filepath", label="overlay")
        inputs = {
            "classify_slice": [image, model],
            "compare_models": [image],
            "explain_class": [image, label, model],
            "summarise_batch": files,
            "model_figures": [model, optional_label],
            "explain_grad_cam": [],
        }
        for name in TOOL_NAMES:
            outputs = [text, picture] if name in ("classify_slice", "compare_models", "explain_class") else [text]
            trigger = gr.Button(name, visible=False)
            # Not queued: Gradio's MCP server returns a queued event's several outputs as one string (its text and
            # the overlay's path in a tuple), and a direct call as text plus image. The gates hold them to the page's limits.
            trigger.click(functions[name], inputs[name], outputs, api_name=name, queue=False)
    return gates
