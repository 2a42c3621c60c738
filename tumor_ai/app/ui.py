"""The Gradio app's layout: Predict, Compare, Batch, Assistant and About tabs wired to ``tumor_ai.app.handlers``.

Named API endpoints: the page's ``/predict``, ``/compare``, ``/batch`` (see the README for a
``gradio_client`` snippet), and the tools of ``tumor_ai.app.tool_endpoints`` (``/classify_slice``,
``/compare_models``, ...), which are also the MCP tools. The events that only redraw or tidy the
page are private.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable
from functools import partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from tumor_ai import DISCLAIMER, NOT_A_DIAGNOSIS  # noqa: E402
from tumor_ai.app import handlers  # noqa: E402
from tumor_ai.app.assistant import Brain, Router  # noqa: E402
from tumor_ai.app.tool_endpoints import page_only, register_tools  # noqa: E402
from tumor_ai.app.tools import Toolbox  # noqa: E402
from tumor_ai.app.workspace import CACHE_SWEEP, active_sweep, pictures_folder  # noqa: E402
from tumor_ai.core.cam import method_name  # noqa: E402
from tumor_ai.core.examples import load_examples  # noqa: E402
from tumor_ai.core.explain import DEFAULT_OPACITY, legend_html  # noqa: E402
from tumor_ai.core.imaging import IMAGE_SUFFIXES  # noqa: E402
from tumor_ai.core.inference import Predictor  # noqa: E402
from tumor_ai.core.wording import (  # noqa: E402
    API_DESCRIPTIONS,
    APP_TITLE,
    COMPARE_STRENGTH,
    GUESS_FIRST,
    HARD_CASE_TITLES,
    OUTLINE_TOGGLE,
    PREVIEW_ALT,
    comparison_notes,
    comparison_table,
    listed,
    map_caveat,
    preview_tagline,
    reliability_missing,
    share_description,
    what_it_does,
    which_is_better,
)
from tumor_ai.model.folder import shown_source  # noqa: E402
from tumor_ai.model.labels import display_name  # noqa: E402
from tumor_ai.model.metadata import RELIABILITY_FILE  # noqa: E402
from tumor_ai.publish.card import localisation_summary, model_card  # noqa: E402

if TYPE_CHECKING:
    from tumor_ai.app.loading import ModelLoader

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"  # package data: the wheel serves them too
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.jpg"))
OTHER_TYPES = list(IMAGE_SUFFIXES)  # the file button takes every format, DICOM and TIFF above all
BATCH_TYPES = [*IMAGE_SUFFIXES, ".zip"]
MODEL_CONCURRENCY = 8  # Predict and Compare requests handled at once; their forward passes share batches
MODEL_QUEUE = {"concurrency_id": "model", "concurrency_limit": MODEL_CONCURRENCY}  # every event that runs a model
BATCH_HELP = (
    "A .zip with class folders (`glioma/`, `meningioma/`, `notumor/`, `pituitary/`) is a labelled set: each model's "
    "accuracy and confusion matrix come with the table. The same picture uploaded twice is one row. Stop keeps what "
    "is done; so does closing the page, which also ends the work."
)
# After an answer: close the error pop-ups of earlier attempts, and on a phone (one column) bring the
# answer into view, since it lands below the inputs.
SHOW_ANSWER_JS = """() => {
  document.querySelectorAll('.toast-wrap .toast-close, .toast-body .toast-close').forEach((b) => b.click());
  if (window.innerWidth < 768) document.getElementById('ELEM_ID')?.scrollIntoView({block: 'start'});
}"""
# The teaching panel written again: when it is above the window (the page scrolled down to an example or a switch),
# bring it back into view, so the true class is seen when it is revealed; a panel below the window (a phone, before
# the answer) stays where it is.
REVEAL_JS = """() => {
  const panel = document.getElementById('ELEM_ID');
  if (panel && panel.innerText.trim() && panel.getBoundingClientRect().top < 0) panel.scrollIntoView({block: 'start'});
}"""
# A batch row opened in Compare: its answer into view, whatever the width (the table was far down the page).
SHOW_OPENED_JS = """() => {
  document.querySelectorAll('.toast-wrap .toast-close, .toast-body .toast-close').forEach((b) => b.click());
  requestAnimationFrame(() => document.getElementById('compare-answer')?.scrollIntoView({block: 'start'}));
}"""


# The page's own styles (``tumor_ai.app.serve`` passes them to ``launch``, where Gradio 6 takes them).
PAGE_CSS = """
/* Tables in the page's text (Compare's answers, a labelled batch's confusion matrices, the model cards): a header
   wraps between words, never inside one; on a phone the cells are tighter, and a table still too wide scrolls. */
.prose table th, .prose table td { word-break: normal !important; overflow-wrap: normal !important; hyphens: manual; }
.prose:has(table) { overflow-x: auto; }
@media (max-width: 640px) {
  .prose table th, .prose table td { padding: 4px 5px !important; font-size: 0.85em; }
  /* Compare's maps side by side on a phone: each label on one line, beside (not under) the picture's buttons. */
  #compare-overlays [data-testid="block-label"] {
    max-width: calc(100% - 64px); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; display: block;
  }
  /* as a block the label's icon would grow to the label's width, over the map: keep it the size of the text */
  #compare-overlays [data-testid="block-label"] span:has(> svg) { display: inline-block; width: 12px; height: 12px; }
  #compare-overlays [data-testid="block-label"] svg { width: 12px; height: 12px; }
  /* The batch table: tighter cells, so a class name ("Meningioma") fits its model's column whole. Gradio sets each
     column's width on its header and its cells alike (ui._batch_widths), so a cell's padding never misaligns them. */
  #batch-table .cell-wrap { padding-left: 4px !important; padding-right: 4px !important; }
}
/* Batch: the progress is shown in the status line above the summary, in room of its own (while it runs), never over
   the summary's text. */
#batch-status:has([data-testid="status-tracker"]:not(.hide)) { min-height: 64px; overflow: visible; }
/* The colour bar under a map: the colour map from weak to strong evidence, and a mark where the map on screen peaks. */
.evidence-legend { margin: 2px 0 0; font-size: var(--text-sm); }
.evidence-scale { display: flex; align-items: center; gap: 8px; }
.evidence-end { white-space: nowrap; }
.evidence-bar { position: relative; flex: 1 1 auto; height: 12px; border-radius: 3px; }
.evidence-peak {
  position: absolute; top: -4px; bottom: -4px; width: 4px; margin-left: -2px; border-radius: 2px;
  background: var(--body-text-color); box-shadow: 0 0 0 1px var(--background-fill-primary);
}
.evidence-words { margin: 4px 0 0; }
"""


def _opacity(elem_id: str) -> gr.Slider:
    """The overlay opacity slider; a request's text or list for it gets one sentence, not Gradio's empty error (the
    slider's own check compares the value with its bounds before it knows that it is a number). The check is set on
    this slider alone: a subclass of a Gradio component makes Gradio write a stub file beside this module."""
    slider = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", elem_id=elem_id)
    own = slider.preprocess
    slider.preprocess = lambda payload: own(handlers.opacity_value(payload))
    return slider


def privacy_text(cache_sweep: tuple[int, int], session_seconds: int) -> str:
    """What the app keeps and for how long, from the settings it really runs with."""
    every, age = cache_sweep
    return (
        "**What the app keeps.** An upload is stored in the app's own temporary folder, and the slice decoded from it, "
        "with its Grad-CAM maps, stays in your session's memory so that you can run it again, switch model and move "
        f"the sliders. Every {_duration(every)} the folder drops files older than {_duration(age)} (so an upload, and "
        f"every picture or CSV the app drew for it, is gone within {_duration(every + age)}, or at the next sweep after "
        "the batch reading it ends), and the app deletes the "
        f"whole folder when it stops. Session memory is dropped {_duration(session_seconds)} after your last action. "
        "The logs record the kind of a refused file, never its name or content."
    )


def maps_text(predictors: dict[str, Predictor]) -> str:
    """What the overlays can be trusted for, with each model's measured figures (``tumor-ai localise``)."""
    lines = [
        "### Can you trust the overlays? Measured, not assumed",
        "On held-out tumour slices with the tumour outlined by the dataset's authors, each model's map was checked "
        "against the outline, and each model was asked again with the tumour erased:",
        "",
        *[f"- {localisation_summary(predictor.metadata)}" for predictor in predictors.values()],
        "",
        "The classes of this dataset come from different source collections (every glioma and most meningiomas and "
        "pituitary tumours from one; every no-tumour slice from others), so a model can score well without reading "
        "the lesion. Try it yourself: *Hide a region and ask again* in Predict and Compare. Each model card below has "
        "the full table.",
    ]
    return "\n".join(lines)


def _map_name(predictor: Predictor) -> str:
    """The map a model serves, as its metadata names it ("Grad-CAM++ at block4_out")."""
    metadata = predictor.metadata
    return f"{method_name(metadata.cam_method)} at {metadata.cam_layer}"


def _duration(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"


def _header(predictors: dict[str, Predictor]) -> str:
    """What the app does, from the models' own metadata: their classes and what they are."""
    return what_it_does(*_classes_and_models(predictors))


def _classes_and_models(predictors: dict[str, Predictor]) -> tuple[list[str], list[str]]:
    """The classes the models tell apart, and each model as a sentence names it ("a Custom CNN")."""
    labels = next(iter(predictors.values())).labels
    return labels, [f"a {predictor.metadata.title or name}" for name, predictor in predictors.items()]


def serving_text(predictors: dict[str, Predictor], sources: dict[str, str], fallback_reasons: dict[str, str]) -> str:
    """Which model serves from where, and why where a Hub source fell back to a local folder."""
    lines = []
    for name, predictor in predictors.items():
        line = f"`{name}` from `{shown_source(sources.get(name, predictor.source))}`"
        if name in fallback_reasons:
            line += f", because {fallback_reasons[name]}"
        lines.append(line)
    return "Models serving: " + "; ".join(lines) + "."


def _slice_input(label: str, elem_id: str) -> tuple[gr.Image, gr.UploadButton]:
    """An image input that shows the slice, and a button for files a browser cannot show (DICOM, TIFF)."""
    image = gr.Image(label=label, type="filepath", format="png", sources=["upload", "clipboard"], elem_id=elem_id, height=300)
    other = gr.UploadButton("Open DICOM, TIFF or another file", file_types=OTHER_TYPES, size="sm", elem_id=f"{elem_id}-other")
    return image, other


def outputs(template: Any) -> list:
    """The components a handler's named result fills, in the order its values reach Gradio.

    ``template`` is the handler's result type (``tumor_ai.app.handlers.PredictOutputs``, ...) built with
    components instead of values; a dict in it holds one component (or column) per model, a list
    several components that take one value.
    """
    if isinstance(template, dict):
        return [component for slot in template.values() for component in outputs(slot)]
    if isinstance(template, tuple | list):
        return [component for slot in template for component in outputs(slot)]
    return [template]


def _values(template: Any, result: Any) -> list:
    """``result`` laid out as ``outputs(template)``: each value where the component of its name is."""
    if isinstance(result, dict) and result == gr.skip() and isinstance(template, tuple | list | dict):
        return [result] * len(outputs(template))  # a skip for a group: every output in it keeps what it shows
    if isinstance(template, tuple) and type(result) is not type(template):
        raise TypeError(f"expected a {type(template).__name__}, got a {type(result).__name__}")
    if isinstance(template, tuple):
        return [value for name, slot in zip(template._fields, template) for value in _values(slot, getattr(result, name))]
    if isinstance(template, dict):
        return [value for key, slot in template.items() for value in _values(slot, result[key])]
    if isinstance(template, list):
        return [value for slot in template for value in _values(slot, result)]
    return [result]


def named(fn: Callable, template: Any) -> Callable:
    """``fn``, which returns (or yields) a named result, as Gradio calls it: its values in ``outputs(template)``'s order.

    The wrapper keeps ``fn``'s signature (Gradio reads it for the API and for ``gr.Progress``).
    """
    if inspect.isgeneratorfunction(fn):

        @wraps(fn)
        def each(*args, **kwargs):
            for result in fn(*args, **kwargs):
                yield _values(template, result)

        wrapper = each
    else:

        @wraps(fn)
        def call(*args, **kwargs):
            return _values(template, fn(*args, **kwargs))

        wrapper = call
    wrapper.__name__ = getattr(fn, "__name__", getattr(getattr(fn, "func", None), "__name__", "handler"))  # a partial has none
    wrapper.__doc__ = getattr(fn, "func", fn).__doc__  # a partial's own docstring ("partial(func, ...)") is not ours
    # Gradio hands a gr.Request to a parameter annotated so, reading the wrapper's annotations, which a partial lacks.
    hints = getattr(getattr(fn, "func", fn), "__annotations__", {})
    requests = {name: gr.Request for name, hint in hints.items() if hint in ("gr.Request", gr.Request)}
    wrapper.__annotations__ = {**getattr(wrapper, "__annotations__", {}), **requests}
    return wrapper


def _crops(predictors: dict[str, Predictor]) -> dict[str, str]:
    """Each model's crop, as its metadata names it ("head": it reads only the square around the head)."""
    return {name: predictor.metadata.crop for name, predictor in predictors.items()}


def _model_title(name: str, predictor: Predictor) -> str:
    """A model as a person picks it: its metadata's title and the name it serves under ("Custom CNN (cnn)")."""
    title = predictor.metadata.title
    return f"{title} ({name})" if title and title != name else name


HIDE_HELP = (
    "Paint over part of the slice (the tumour, say) and ask again: the painted region is filled smoothly from its "
    "surroundings and every model answers. If a model keeps its answer with the lesion hidden, it was not reading the lesion."
)


class HideControls(NamedTuple):
    """The "hide a region" block of one tab."""

    editor: gr.ImageEditor
    button: gr.Button
    hidden: gr.Image
    answers: gr.Markdown

    @property
    def cleared(self) -> list:
        """What a new slice clears: the editor and the answers about the old slice."""
        return [self.editor, self.hidden, self.answers]


def _hide_block(prefix: str) -> HideControls:
    """The "hide a region and ask again" controls: an editor to paint on, a button, the hidden slice and the answers."""
    with gr.Accordion("Hide a region and ask again", open=False, elem_id=f"{prefix}-hide"):
        gr.Markdown(HIDE_HELP)
        with gr.Row():
            editor = gr.ImageEditor(
                label="Paint the region to hide",
                type="numpy",
                sources=(),
                transforms=(),
                layers=False,
                brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=24),
                eraser=gr.Eraser(default_size=24),
                elem_id=f"{prefix}-editor",
                height=360,
            )
            hidden = gr.Image(label="What the models saw", type="numpy", interactive=False, elem_id=f"{prefix}-hidden")
        button = gr.Button("Hide it and ask again", elem_id=f"{prefix}-hide-button")
        answers = gr.Markdown(elem_id=f"{prefix}-hide-answers")
    return HideControls(editor, button, hidden, answers)


def _wire_hide(predictors, controls: HideControls, state, shown_after) -> None:
    """The editor gets the slice once a model has answered; the button asks every model again."""
    shown_after.then(handlers.editable_slice, state, controls.editor, api_visibility="private", queue=False)
    answer = handlers.HideOutputs(hidden=controls.hidden, answers=controls.answers)
    controls.button.click(
        named(partial(handlers.hide_and_ask, predictors), answer),
        [controls.editor, state],
        outputs(answer),
        api_visibility="private",
        **MODEL_QUEUE,
    )


def _answer_on_click(button, fn, inputs, outs, name: str, spinner):
    """A public endpoint that answers with a model: named and described on the API page, the upload read by the
    handler itself (so a bad file is refused in one sentence), queued with the other model calls, and one spinner (or
    one error badge) on ``spinner`` rather than one per pane."""
    return button.click(
        page_only(fn),
        inputs,
        outs,
        api_name=name,
        api_description=API_DESCRIPTIONS[name],
        preprocess=False,
        show_progress_on=[spinner],
        **MODEL_QUEUE,
    )


def _on_change(control, fn, inputs, outputs):
    """A slider or choice that only redraws: private, the latest value wins, beside (not behind) the model queue."""
    return control.change(
        fn, inputs, outputs, api_visibility="private", trigger_mode="always_last", concurrency_id="draw", concurrency_limit=4
    )


BATCH_AGREE_WIDTH = 64  # pixels: "agree" (and "yes", "no") on one line at any width; a share of a phone's table is not


def _batch_widths(columns: list[str], names: list[str]) -> list[str]:
    """The columns' widths, which Gradio gives a column's header and its cells alike: the models' columns take most of
    the table, so a phone shows each without scrolling. "agree" is as wide as its word; 9% is kept for it, so a
    desktop's table fits its column, and a phone's is a little wider than the screen: its last column scrolls in."""
    shares = {"file": 20, "agree": 9, "note": 14}
    rest = (100 - sum(shares[column] for column in columns if column in shares)) / len(names)
    return [f"{BATCH_AGREE_WIDTH}px" if column == "agree" else f"{shares.get(column, rest):g}%" for column in columns]


def _show_answer(event, elem_id: str) -> None:
    """After a good answer, in the browser only: old error pop-ups closed, the answer scrolled into view on a phone."""
    event.success(None, None, None, js=SHOW_ANSWER_JS.replace("ELEM_ID", elem_id))


def _wire_slice(image, other, state, message, cleared: list) -> list:
    """A new picture (upload, example, paste, file button) is checked at once and clears what was about the old one.

    Returns the two events (file button, input change), for what follows a new slice (the teaching panel)."""
    shown = handlers.SliceOutputs(picture=image, slice=state, message=message, cleared=cleared)
    opened = other.upload(
        named(handlers.open_file, shown),
        other,
        outputs(shown),
        api_visibility="private",
        concurrency_id="io",
        concurrency_limit=4,
    )
    changed = image.change(
        named(handlers.new_slice, shown),
        [image, state],
        outputs(shown),
        preprocess=False,
        api_visibility="private",
        concurrency_id="io",
        concurrency_limit=4,
    )
    return [opened, changed]


class Shown(NamedTuple):
    """The pictures the page shows, as copies in ``folder``: the examples, each model's confusion matrix, and the
    picture a shared link's preview card shows."""

    folder: Path
    examples: list[Path]
    matrices: dict[str, Path]
    preview: Path | None = None
    reliability: dict[str, Path] = {}  # each model's reliability diagram, where its folder has one
    hard: tuple[tuple[Path, str], ...] = ()  # the hard cases and their gallery titles (the reason, never the class)
    labelled: Path | None = None  # every example in a .zip of class folders: a labelled batch


class SharePreview(NamedTuple):
    """What a shared link's preview card says (the page's ``og:`` and ``twitter:`` tags; ``tumor_ai.app.serve``)."""

    title: str
    description: str
    image: Path | None
    image_alt: str


def show_pictures(predictors: dict[str, Predictor]) -> Shown:
    """Copy the examples and each model's confusion matrix into a folder of their own (``workspace.pictures_folder``),
    and draw the preview card's picture there."""
    folder = pictures_folder()
    examples = []
    for path in EXAMPLES:
        examples.append(folder / path.name)
        shutil.copyfile(path, examples[-1])
    hard = []
    for example in load_examples(EXAMPLES_DIR):
        if example.hard:
            hard.append((folder / f"hard-{example.path.name}", HARD_CASE_TITLES[example.case]))
            shutil.copyfile(example.path, hard[-1][0])
    matrices, reliability = {}, {}
    for index, (name, predictor) in enumerate(predictors.items()):
        for picture, copies in (("confusion_matrix.png", matrices), (RELIABILITY_FILE, reliability)):
            found = (predictor.folder or Path(predictor.source)) / picture
            if found.is_file():
                copies[name] = folder / f"model{index}-{picture}"
                shutil.copyfile(found, copies[name])
    labels = next(iter(predictors.values())).labels
    one_each = [path for label in labels for path in EXAMPLES if path.stem == label] or EXAMPLES[:4]
    preview = folder / "preview.png" if one_each else None
    if preview:
        shown = [(path, display_name(path.stem)) for path in one_each]
        preview_picture(shown, preview_tagline(len(predictors))).save(preview)  # not optimize=True: 5x the time for 10% less
    return Shown(folder, examples, matrices, preview, reliability, tuple(hard), labelled_zip(folder))


def labelled_zip(folder: Path) -> Path | None:
    """Every example in a .zip of class folders (``glioma/glioma.jpg``, ``meningioma/disagree.jpg``, ...) in ``folder``:
    the Batch tab's labelled example set, whose errors and disagreements can be filtered."""
    import zipfile

    examples = load_examples(EXAMPLES_DIR)
    if not examples:
        return None
    path = folder / "labelled.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for example in examples:
            archive.write(example.path, f"{example.label}/{example.path.name}")
    return path


PREVIEW_SIZE = (1200, 630)  # the size link previews (Open Graph, X/Twitter's large card) are drawn at


def preview_picture(slices: list[tuple[Path, str]], tagline: str) -> Image.Image:
    """The preview card's picture: the app's name, what it does, and one example slice of each class, named."""

    def font(size: int):
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, OSError):  # a Pillow without FreeType has one small bitmap font
            return ImageFont.load_default()

    width, height = PREVIEW_SIZE
    card = Image.new("RGB", PREVIEW_SIZE, (11, 15, 25))
    draw = ImageDraw.Draw(card)
    draw.text((48, 36), "tumor-ai", fill=(255, 255, 255), font=font(64))
    draw.text((50, 116), tagline, fill=(200, 205, 215), font=font(30))
    gap, top = 24, 188
    side = min(300, (width - 96 - gap * (len(slices) - 1)) // max(len(slices), 1))
    left = (width - side * len(slices) - gap * (len(slices) - 1)) // 2
    for index, (path, name) in enumerate(slices):
        with Image.open(path) as picture:
            tile = picture.convert("RGB")
        tile.thumbnail((side, side))
        x = left + index * (side + gap)
        card.paste(tile, (x + (side - tile.width) // 2, top + (side - tile.height) // 2))
        label = font(28)
        shown = draw.textlength(name, font=label)
        draw.text((x + (side - shown) / 2, top + side + 14), name, fill=(255, 255, 255), font=label)
    draw.text((50, height - 56), NOT_A_DIAGNOSIS, fill=(255, 190, 120), font=font(24))
    return card


def build_app(
    predictors: dict[str, Predictor],
    sources: dict[str, str] | None = None,
    fallback_reasons: dict[str, str] | None = None,
    cache_sweep: tuple[int, int] = CACHE_SWEEP,
    session_seconds: int = handlers.SESSION_SECONDS,
    brain: Brain | None = None,
    loading: ModelLoader | None = None,
) -> gr.Blocks:
    """The five-tab Blocks app over ``predictors`` (name -> Predictor); the last one is the default model.

    ``fallback_reasons`` (name -> why its Hub source failed) puts a banner over the page; ``brain``
    answers in the Assistant tab (the deterministic ``Router`` unless a language model is given).
    ``loading``: the models are still loading (``tumor_ai.app.loading``; ``predictors`` is its dict of stand-ins),
    and a line under the header says so until they are ready, or says in one sentence why they could not be loaded.
    """
    sources = sources or {name: predictor.source for name, predictor in predictors.items()}

    def session_state():
        return gr.State(None, time_to_live=session_seconds)

    # The examples and each model's confusion matrix are copied into a folder of their own, the one folder served
    # as static: never a model folder (model.keras, split.json, a stray .env) or a Hub cache, and never the
    # cache the sweep empties, so a visitor after the first sweep still gets them (no 403, no "file not found").
    shown = show_pictures(predictors)
    gr.set_static_paths([shown.folder])

    # The app's own sweeper (tumor_ai.app.workspace) spares files a running batch reads; Gradio's would not.
    gradio_sweep = None if active_sweep() else cache_sweep
    with gr.Blocks(title=APP_TITLE, analytics_enabled=False, delete_cache=gradio_sweep) as app:
        gr.Markdown(f"# tumor-ai\n{_header(predictors)}\n\n> ⚠️ **{DISCLAIMER}**")
        if loading is not None:
            _loading_status(app, loading)
        serving = serving_text(predictors, sources, fallback_reasons or {})
        if fallback_reasons:
            gr.Markdown(f"> ⚠️ **Not the requested models.** {serving}", elem_id="fallback-banner")
        unchecked = [name for name, predictor in predictors.items() if predictor.mri_check is None]
        if unchecked:
            gr.Markdown(
                f"> ⚠️ **The not-an-MRI check is off for {listed(unchecked)}**: any picture, MRI or not, "
                "gets a tumour class from it. The operator started the app with --allow-no-mri-check.",
                elem_id="no-mri-check-banner",
            )
        with gr.Tabs(elem_id="tabs") as tabs:  # a batch row opens the Compare tab
            predict_switches = _predict_tab(predictors, session_state, shown)
            compare = _compare_tab(predictors, session_state, shown)
            _batch_tab(predictors, session_state, shown, compare, tabs)
            toolbox = Toolbox(predictors)
            _assistant_tab(toolbox, brain or Router(), session_state)
            _about_tab(predictors, serving, cache_sweep, session_seconds, shown)
        _same_switches(predict_switches, compare.switches)
        app.tool_gates = register_tools(toolbox, app)  # after the last tab: a block between tabs would start a second tab bar
    app.page_css = PAGE_CSS
    app.share_preview = SharePreview(APP_TITLE, share_description(*_classes_and_models(predictors)), shown.preview, PREVIEW_ALT)
    return app


def models_status(loading: ModelLoader) -> str:
    """The line under the header while the models load (or after they failed to): the loader's sentence, marked."""
    text = loading.status()
    if not text:
        return ""
    return f"> ⚠️ **{text}**" if loading.error else f"> **{text}**"


def _loading_status(app: gr.Blocks, loading: ModelLoader) -> None:
    """The models' status under the header: written when the page opens, then once a second until the loading is over
    (a timer that stops itself), so a page opened during start-up sees "Loading the models…" go once they are ready."""
    text = models_status(loading)
    status = gr.Markdown(text, visible=bool(text), elem_id="models-status")
    timer = gr.Timer(1.0, active=not loading.settled)

    def shown():
        text = models_status(loading)
        return gr.update(value=text, visible=bool(text)), gr.Timer(active=not loading.settled)

    for event in (app.load, timer.tick):
        event(shown, None, [status, timer], api_visibility="private", queue=False, show_progress="hidden")


class Switches(NamedTuple):
    """A tab's teaching switches: guess first (the true class after the answer), and the tumour outline over the maps."""

    guess: gr.Checkbox
    outline: gr.Checkbox


def _switches(prefix: str) -> Switches:
    """The two teaching switches under a tab's examples."""
    guess = gr.Checkbox(
        value=True,
        label=GUESS_FIRST,
        info="A labelled example's true class shows only once the models have answered.",
        elem_id=f"{prefix}-guess",
    )
    outline = gr.Checkbox(
        value=False,
        label=OUTLINE_TOGGLE,
        info="Drawn over the maps: does the evidence fall on the tumour?",
        elem_id=f"{prefix}-outline",
    )
    return Switches(guess, outline)


def _same_switches(first: Switches, second: Switches) -> None:
    """Predict's and Compare's switches move together: a teacher sets them once (``input``: a person's change only)."""
    for one, other in ((first, second), (second, first)):
        for mine, theirs in zip(one, other):
            mine.input(lambda value: value, mine, theirs, api_visibility="private", queue=False)


def _examples(shown: Shown, image: gr.Image, prefix: str, label: str) -> None:
    """A tab's examples: one slice per class, then the hard cases titled by why each was chosen (never by class)."""
    if shown.examples:
        gr.Examples([[str(path)] for path in shown.examples], inputs=[image], label=label, elem_id=f"{prefix}-examples")
    if shown.hard:
        gr.Examples(
            [[str(path)] for path, _ in shown.hard],
            inputs=[image],
            label="Hard cases (validation split)",
            example_labels=[title for _, title in shown.hard],
            elem_id=f"{prefix}-hard",
        )


def _wire_teaching(predictors: dict[str, Predictor], panel: gr.Markdown, inputs: list, after: list, guess) -> None:
    """The teaching panel (true class, outline note) is written again after each event in ``after`` (then scrolled
    into view), and when the ``guess`` switch turns."""
    teaching = partial(handlers.teaching, predictors)
    for event in after:
        event.then(teaching, inputs, panel, api_visibility="private", queue=False).then(
            None, None, None, js=REVEAL_JS.replace("ELEM_ID", panel.elem_id)
        )
    guess.change(teaching, inputs, panel, api_visibility="private", queue=False)


def _predict_tab(predictors: dict[str, Predictor], session_state, shown: Shown) -> Switches:
    """One slice through the model of your choice: confidences, the Grad-CAM overlay and heatmap, a reading."""
    names = list(predictors)
    default = names[-1]
    labels = predictors[default].labels
    evidence_choices = [("Its answer", handlers.TOP_CLASS)] + [(display_name(label), label) for label in labels]
    with gr.Tab("Predict", id="predict"):
        p_slice, p_explained, p_outline = session_state(), session_state(), session_state()  # outline: None is off
        with gr.Row():
            with gr.Column(scale=1):
                p_image, p_other = _slice_input("MRI slice", "predict-image")
                p_model = gr.Radio(
                    [(_model_title(name, predictors[name]), name) for name in names],
                    value=default,
                    label="Model",
                    elem_id="predict-model",
                )
                p_button = gr.Button("Predict", variant="primary", elem_id="predict-button")
                p_opacity = _opacity("predict-opacity")
                p_evidence = gr.Radio(
                    evidence_choices, value=handlers.TOP_CLASS, label="Show evidence for", elem_id="predict-evidence"
                )
                _examples(shown, p_image, "predict", "Examples (CC0; from the validation split: no model here trained on them)")
                p_switches = _switches("predict")
            with gr.Column(scale=2, elem_id="predict-answer"):
                p_teaching = gr.Markdown(elem_id="predict-teaching")
                p_label = gr.Label(num_top_classes=len(labels), label="Confidence (calibrated)")
                with gr.Row():
                    p_overlay = gr.Image(
                        label="Evidence overlay", type="numpy", format="png", interactive=False, elem_id="predict-overlay"
                    )
                    p_heatmap = gr.Image(
                        label="Evidence heatmap", type="numpy", format="png", interactive=False, elem_id="predict-heatmap"
                    )
                p_legend = gr.HTML(elem_id="predict-legend")
                gr.Markdown(map_caveat(_crops(predictors)), elem_id="predict-caveat")
                p_reading = gr.Markdown(elem_id="predict-reading")
                with gr.Accordion("Details (JSON, as the API returns it)", open=False):
                    p_details = gr.JSON()
                p_hide = _hide_block("predict")
        p_answer = handlers.PredictOutputs(
            label=p_label,
            overlay=p_overlay,
            heatmap=p_heatmap,
            reading=p_reading,
            details=p_details,
            slice=p_slice,
            explained=p_explained,
        )
        p_redrawn = handlers.EvidenceOutputs(overlay=p_overlay, heatmap=p_heatmap, reading=p_reading, explained=p_explained)
        p_new = _wire_slice(
            p_image,
            p_other,
            p_slice,
            p_reading,
            [p_label, p_overlay, p_heatmap, p_legend, p_details, p_explained, *p_hide.cleared],
        )
        # The colour bar follows every drawing of the map (a private step after it: the API's outputs stay as they are).
        legend = partial(handlers.evidence_legend, predictors)
        legend_after = {"fn": legend, "inputs": [p_explained, p_evidence], "outputs": p_legend, "api_visibility": "private"}
        p_done = _answer_on_click(
            p_button,
            named(partial(handlers.predict, predictors), p_answer),
            [p_image, p_model, p_opacity, p_evidence, p_slice, p_outline],
            outputs(p_answer),
            "predict",
            p_label,
        )
        _show_answer(p_done, "predict-answer")
        p_done.then(**legend_after, queue=False)
        _wire_hide(predictors, p_hide, p_slice, p_done)
        p_switched = p_model.change(
            named(partial(handlers.model_switched, predictors), p_answer),
            [p_model, p_opacity, p_evidence, p_slice, p_explained, p_outline],
            outputs(p_answer),
            api_visibility="private",
            trigger_mode="always_last",
            **MODEL_QUEUE,
            show_progress_on=[p_label],
        )
        p_switched.then(**legend_after, queue=False)
        for control in (p_opacity, p_evidence):
            _on_change(
                control,
                named(partial(handlers.redraw, predictors), p_redrawn),
                [p_explained, p_opacity, p_evidence, p_outline],
                outputs(p_redrawn),
            ).then(**legend_after, queue=False)
        p_outlined = p_switches.outline.change(
            lambda on: bool(on), p_switches.outline, p_outline, api_visibility="private", queue=False
        ).then(
            named(partial(handlers.show_outline, predictors), p_redrawn),
            [p_outline, p_explained, p_opacity, p_evidence],
            outputs(p_redrawn),
            api_visibility="private",
            concurrency_id="draw",
            concurrency_limit=4,
        )
        teaching = [p_slice, p_explained, p_switches.guess, p_outline]
        _wire_teaching(predictors, p_teaching, teaching, [*p_new, p_done, p_switched, p_outlined], p_switches.guess)
    return p_switches


class CompareHandle(NamedTuple):
    """What another tab needs of Compare to open a slice there (a batch row): its input, outputs and switches."""

    image: gr.Image
    answer: handlers.CompareOutputs
    teaching: gr.Markdown
    opacity: gr.Slider
    outline: gr.State
    switches: Switches
    hide: HideControls


def _compare_tab(predictors: dict[str, Predictor], session_state, shown: Shown) -> CompareHandle:
    """One slice through every model side by side, with the verdict that matters."""
    names = list(predictors)
    labels = predictors[names[-1]].labels
    with gr.Tab("Compare", id="compare"):
        c_slice, c_explained, c_outline = session_state(), session_state(), session_state()
        with gr.Row():
            with gr.Column(scale=1):
                c_image, c_other = _slice_input("MRI slice", "compare-image")
                c_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                c_opacity = _opacity("compare-opacity")
                _examples(shown, c_image, "compare", "Examples")
                c_switches = _switches("compare")
            with gr.Column(scale=2, elem_id="compare-answer"):
                c_teaching = gr.Markdown(elem_id="compare-teaching")
                c_summary = gr.Markdown(elem_id="compare-summary")
                # The maps first and side by side, on a phone too (one screen shows both), then the confidences.
                with gr.Row(elem_id="compare-overlays"):
                    maps = {name: _compare_map(name, predictors[name]) for name in names}
                gr.HTML(legend_html(COMPARE_STRENGTH), elem_id="compare-legend")
                gr.Markdown(map_caveat(_crops(predictors)), elem_id="compare-caveat")
                with gr.Row(elem_id="compare-labels"):  # a narrow page puts them one under the other
                    confidences = {name: _compare_label(name, predictors[name], len(labels)) for name in names}
                c_hide = _hide_block("compare")
        c_columns = {name: handlers.CompareColumn(label=confidences[name], overlay=maps[name]) for name in names}
        c_answer = handlers.CompareOutputs(models=c_columns, summary=c_summary, slice=c_slice, explained=c_explained)
        c_overlays = {name: column.overlay for name, column in c_columns.items()}
        c_new = _wire_slice(c_image, c_other, c_slice, c_summary, [*outputs(c_columns), c_explained, *c_hide.cleared])
        c_done = _answer_on_click(
            c_button,
            named(partial(handlers.compare, predictors), c_answer),
            [c_image, c_opacity, c_slice, c_outline],
            outputs(c_answer),
            "compare",
            c_summary,
        )
        _show_answer(c_done, "compare-answer")
        _wire_hide(predictors, c_hide, c_slice, c_done)
        _on_change(
            c_opacity,
            named(partial(handlers.recolour_compare, predictors), c_overlays),
            [c_explained, c_opacity, c_outline],
            outputs(c_overlays),
        )
        c_outlined = c_switches.outline.change(
            lambda on: bool(on), c_switches.outline, c_outline, api_visibility="private", queue=False
        ).then(
            named(partial(handlers.show_outline_compare, predictors), c_overlays),
            [c_outline, c_explained, c_opacity],
            outputs(c_overlays),
            api_visibility="private",
            concurrency_id="draw",
            concurrency_limit=4,
        )
        teaching = [c_slice, c_explained, c_switches.guess, c_outline]
        _wire_teaching(predictors, c_teaching, teaching, [*c_new, c_done, c_outlined], c_switches.guess)
    return CompareHandle(c_image, c_answer, c_teaching, c_opacity, c_outline, c_switches, c_hide)


def _compare_map(name: str, predictor: Predictor) -> gr.Image:
    """One model's map over the slice in Compare, named by its model and its method."""
    return gr.Image(
        label=f"{name}: {_map_name(predictor)}",
        type="numpy",
        format="png",
        interactive=False,
        elem_id=f"compare-{name}",
        min_width=120,  # two side by side on a phone
        buttons=["download", "fullscreen"],  # room for the label on a phone
    )


def _compare_label(name: str, predictor: Predictor, classes: int) -> gr.Label:
    """One model's confidences in Compare, titled from its metadata."""
    return gr.Label(num_top_classes=classes, label=f"{_model_title(name, predictor)}: confidence", min_width=220)


def _batch_tab(predictors: dict[str, Predictor], session_state, shown: Shown, compare: CompareHandle, tabs: gr.Tabs) -> None:
    """Many files or a zip: the table, overlays and CSV fill in as it runs; Stop keeps what is done.

    A labelled batch's errors and disagreements can be shown alone, and a selected row opens its slice in Compare.
    """
    names = list(predictors)
    labels = predictors[names[-1]].labels
    examples = shown.examples
    with gr.Tab("Batch", id="batch"):
        b_entries, b_rows, b_view = session_state(), session_state(), session_state()
        with gr.Row():
            with gr.Column(scale=1):
                b_files = gr.File(
                    label="Images or a .zip of images",
                    file_count="multiple",
                    file_types=BATCH_TYPES,
                    type="filepath",
                    height=260,  # a long list scrolls instead of pushing the buttons off the page
                    elem_id="batch-files",
                )
                with gr.Row():
                    b_button = gr.Button("Run batch", variant="primary", elem_id="batch-button")
                    b_stop = gr.Button("Stop", variant="stop", elem_id="batch-stop")
                b_opacity = _opacity("batch-opacity")
                if examples:
                    gr.Examples([[[str(path) for path in examples]]], inputs=[b_files], label="Example set (one slice per class)")
                if shown.labelled:
                    gr.Examples(
                        [[[str(shown.labelled)]]],
                        inputs=[b_files],
                        label="Labelled set (every example and hard case in class folders, as a .zip)",
                        elem_id="batch-labelled",
                    )
                gr.Markdown(BATCH_HELP)
                b_csv = gr.File(label="Results (CSV: every class's probability, full precision)", elem_id="batch-csv")
            with gr.Column(scale=2):
                b_status = gr.Markdown(elem_id="batch-status")
                b_summary = gr.Markdown(elem_id="batch-summary")
                b_filter = gr.Radio(
                    [("All", "all"), ("Errors", "errors"), ("Disagreements", "disagreements")],
                    value="all",
                    label="Show rows",
                    info=f"Errors: a model's answer is another class than the file's folder. {handlers.WRONG_MARK} marks it.",
                    elem_id="batch-filter",
                )
                b_note = gr.Markdown(elem_id="batch-view")
                empty_table = handlers.table_frame([], names)
                b_table = gr.Dataframe(
                    empty_table,
                    label="Results (calibrated confidence)",
                    wrap=True,
                    column_widths=_batch_widths(list(empty_table.columns), names),  # on a phone too, every model shows
                    elem_id="batch-table",
                )
                b_gallery = gr.Gallery(label="Grad-CAM overlays", columns=len(names), height="auto", elem_id="batch-gallery")
                gr.Markdown(map_caveat(_crops(predictors)), elem_id="batch-caveat")
        b_answer = handlers.BatchOutputs(
            summary=b_summary, table=b_table, gallery=b_gallery, csv=b_csv, entries=b_entries, rows=b_rows
        )
        fresh = {b_filter: gr.update(value="all", interactive=False), b_note: "", b_view: None}  # while a batch runs
        b_files.change(  # new files: what was about the old ones goes
            lambda: {
                b_status: "",
                b_summary: "",
                b_table: empty_table,
                b_gallery: None,
                b_csv: None,
                b_entries: None,
                b_rows: None,
                **fresh,
                b_filter: gr.update(value="all", interactive=True),
            },
            None,
            [b_status, *outputs(b_answer), *fresh],
            api_visibility="private",
            queue=False,
        )
        batch = page_only(named(partial(handlers.batch, predictors), b_answer))
        b_running = session_state()  # whether this page has a batch in flight, for Stop's answer
        b_run = b_button.click(
            lambda: {b_status: "", b_running: True, **fresh},
            None,
            [b_status, b_running, *fresh],
            api_visibility="private",
            queue=False,
        ).then(
            batch,
            [b_files, b_opacity],
            outputs(b_answer),
            api_name="batch",
            api_description=API_DESCRIPTIONS["batch"],
            concurrency_id="batch",
            show_progress_on=[b_status],  # above the summary, in room of its own: never over the summary's text
        )
        usable = gr.update(interactive=True)  # the filter, once the rows are all there (or Stop kept them)
        b_run.then(lambda: (False, usable), None, [b_running, b_filter], api_visibility="private", queue=False)
        # Stop ends the batch between two groups of files; the table and CSV keep what is done.
        b_stop.click(
            handlers.stop_batch,
            [b_running, b_summary],
            [b_status, b_summary, b_running],
            cancels=[b_run],
            api_visibility="private",
            queue=False,
        ).then(lambda: usable, None, b_filter, api_visibility="private", queue=False).then(
            handlers.settle_stopped, [b_status, b_summary], b_summary, api_visibility="private", queue=False
        )
        _on_change(b_opacity, handlers.recolour_batch, [b_entries, b_opacity, b_rows, b_view], b_gallery)
        b_filter.input(  # a person's choice only: the resets above must not redraw the table under a running batch
            partial(handlers.filter_batch, names=names, labels=labels),
            [b_rows, b_filter],
            [b_table, b_note, b_view],
            api_visibility="private",
            queue=False,
        ).then(  # the gallery follows: the overlays of the rows shown
            handlers.recolour_batch, [b_entries, b_opacity, b_rows, b_view], b_gallery, api_visibility="private", queue=False
        )

        def opened(rows, view, paths, opacity, outline, guess_first, chosen: gr.SelectData):
            file = chosen.row_value[0] if chosen.row_value else None
            index = chosen.index[0] if isinstance(chosen.index, list | tuple) else -1
            return handlers.open_in_compare(predictors, rows, view, paths, opacity, outline, guess_first, index, file)

        shown_in_compare = handlers.OpenedOutputs(
            picture=compare.image, compare=compare.answer, teaching=compare.teaching, cleared=compare.hide.cleared, tab=tabs
        )
        b_opened = b_table.select(
            page_only(named(opened, shown_in_compare)),
            [b_rows, b_view, b_files, compare.opacity, compare.outline, compare.switches.guess],
            outputs(shown_in_compare),
            api_visibility="private",
            **MODEL_QUEUE,
        )
        b_opened.success(None, None, None, js=SHOW_OPENED_JS)  # the page was scrolled down to the table
        b_opened.then(handlers.editable_slice, compare.answer.slice, compare.hide.editor, api_visibility="private", queue=False)


def _about_tab(predictors: dict[str, Predictor], serving: str, cache_sweep: tuple[int, int], session_seconds: int, shown: Shown):
    """The models compared (a table, which is better at what, their confusion matrices and reliability diagrams side by
    side), then what the app keeps, which models serve, whether the maps can be trusted, and each model card."""
    names = list(predictors)
    default = names[-1]
    metadata = {name: predictor.metadata for name, predictor in predictors.items()}
    with gr.Tab("About", id="about", elem_id="about-tab"):
        gr.Markdown(
            f"### Which model is better, at what?\n{which_is_better(metadata)}\n\n{comparison_table(metadata)}\n\n"
            f"<small>{comparison_notes(metadata)}</small>",
            elem_id="about-comparison",
        )
        for pictures, what, elem_id in (
            (shown.matrices, "confusion matrix on the validation split", "about-matrices"),
            (shown.reliability, "reliability diagram on the validation split", "about-reliability"),
        ):
            if pictures:
                with gr.Row(elem_id=elem_id):
                    for name in names:
                        with gr.Column(min_width=200):  # each model's place, under its confusion matrix
                            if name in pictures:
                                gr.Image(  # the picture's own title names the model: no label over it
                                    str(pictures[name]), label=f"{name}: {what}", show_label=False, interactive=False
                                )
                            elif pictures is shown.reliability:
                                gr.Markdown(reliability_missing([name]), elem_id=f"about-no-reliability-{name}")
        if not shown.reliability:
            gr.Markdown(reliability_missing(names), elem_id="about-no-reliability")
        gr.Markdown(f"{privacy_text(cache_sweep, session_seconds)}\n\n{serving}")  # the disclaimer is the page's header
        gr.Markdown(maps_text(predictors), elem_id="about-maps")
        for name in [default, *[n for n in names if n != default]]:
            with gr.Accordion(f"Model card: {name}", open=name == default):
                gr.Markdown(model_card(predictors[name].metadata, standalone=False))


def _assistant_tab(toolbox: Toolbox, brain: Brain, session_state) -> None:
    """A chat over the tools: drop slices, ask, and see every tool call the answer came from."""
    from tumor_ai.app.chat import respond, suggestion_chosen

    brain_name = "an intent classifier" if isinstance(brain, Router) else "a language model (" + getattr(brain, "model", "") + ")"
    with gr.Tab("Assistant", id="assistant"):
        conversation = session_state()
        gr.Markdown(
            f"Drop one or more slices and ask: is there a tumour, why, and the other model?, which model is better, what "
            f"a meningioma or Grad-CAM is. Answers come from the models' tools and metadata (each call is shown); "
            f"the questions are matched to tools by {brain_name}. **{NOT_A_DIAGNOSIS}**"
        )
        chatbot = gr.Chatbot(
            label="tumor-ai assistant",
            height=560,
            elem_id="assistant-chat",
            sanitize_html=True,
            allow_tags=False,
            feedback_options=None,
            placeholder="Drop a brain MRI slice (or several) below, then ask about it.",
        )
        box = gr.MultimodalTextbox(
            file_count="multiple",
            file_types=BATCH_TYPES,
            placeholder="Ask about the slice, or drop one here (JPG, PNG, DICOM, .zip)",
            show_label=False,
            elem_id="assistant-box",
            sources=["upload"],
        )
        box.submit(
            page_only(partial(respond, toolbox, brain)),
            [box, chatbot, conversation],
            [chatbot, box, conversation],
            api_visibility="private",
            concurrency_id="model",
        )

        def chosen_suggestion(history: list | None, state, chosen: gr.SelectData):
            return suggestion_chosen(toolbox, brain, history, state, chosen)

        chatbot.option_select(
            page_only(chosen_suggestion),
            [chatbot, conversation],
            [chatbot, box, conversation],
            api_visibility="private",
            concurrency_id="model",
        )
