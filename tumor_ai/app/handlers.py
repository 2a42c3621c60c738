"""What the app does when a person acts: top-level handlers over a dict of loaded predictors.

Each handler takes the predictors first (``tumor_ai.app.ui.build_app`` binds them with
``functools.partial``), so it can be tested without a server. An upload is never deleted here:
Gradio stores one file per content hash, which two people may share, and the app's cache sweep
removes it (``tumor_ai.app.workspace``). The decoded slice and its Grad-CAM maps live in session state, so
running again, switching model, moving the opacity slider or choosing another class never re-reads
the file, and the slider never calls a model.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import gradio as gr
import numpy as np
import pandas as pd

from tumor_ai.app.cache import cache_file, cache_picture  # noqa: F401 - re-exported for one release
from tumor_ai.app.reader import TOP_CLASS, WEB_BATCH_SIZE, Answer, Reader, ReaderError
from tumor_ai.app.workspace import in_use, upload_path
from tumor_ai.core.batch import (
    ANY_TUMOUR,
    PLAUSIBLE,
    BatchItem,
    check_limit,
    columns,
    decode,
    folder_label,
    iter_decoded,
    iter_inputs,
    labelled_report,
    result_rows,
    rows_to_csv,
    run_batch,
    shown_label,
    summary,
)
from tumor_ai.core.conformal import SERVED_LEVEL
from tumor_ai.core.examples import book as examples_book
from tumor_ai.core.explain import display_copy, legend_html, outlined, overlay
from tumor_ai.core.imaging import ImageError, LoadedImage, read_image
from tumor_ai.core.inference import Prediction, Predictor
from tumor_ai.core.safe_text import html_text, markdown
from tumor_ai.core.wording import (  # noqa: F401 - re-exported
    BATCH_RUNNING,
    BATCH_STOPPED,
    HIDE_LESSON,
    NO_BATCH_FILE,
    batch_stopped,
    batch_view,
    example_truth,
    hidden_reading,
    not_a_choice,
    not_a_number,
    outline_note,
    plausible_sentence,
    verdict,
)
from tumor_ai.model.labels import display_name

SESSION_SECONDS = 600  # session state is dropped 10 minutes after it was last set
NO_UPLOAD = "Upload an MRI slice first (JPG, PNG, BMP, TIFF, WebP or DICOM)."
NOTHING_PAINTED = "Paint over the region to hide first: drag the brush across the slice in the editor."
NO_SLICE_TO_HIDE = "Upload a slice and press Predict or Compare first; then paint over a region and ask again."
NO_BATCH_RUNNING = "No batch is running: choose files and press Run batch."
GALLERY_FILES = 48  # overlays drawn per batch; the table and CSV hold every file
THUMBNAIL_SIDE = 256
log = logging.getLogger("tumor_ai.app.ui")
Outputs = TypeVar("Outputs", bound=tuple)


@dataclass
class SessionSlice:
    """The slice a session is looking at, decoded once, or why it was refused; ``key`` is the upload's cache path."""

    key: str | None
    image: LoadedImage | None
    error: str | None = None
    truth: str | None = None  # its class from its folder, for a slice opened from a labelled batch


# What each handler fills, by name. ``tumor_ai.app.ui`` builds the same type holding the components
# (``outputs``), so a value can only land in the output of its own name; a field that holds a list of
# components takes one value for all of them, one that holds a dict takes a value per model.
# Any field may instead hold ``gr.skip()``: that output keeps what it shows.


class SliceOutputs(NamedTuple):
    """A new picture in an input (``new_slice``, ``open_file``)."""

    picture: Any  # the image input's value: the decoded slice shown, None to empty it, or gr.skip()
    slice: SessionSlice | None  # session state
    message: str  # where the answer would be: "Slice loaded", or why the picture was refused
    cleared: Any  # for every output about the old slice: None clears it, gr.skip() keeps it


class PredictOutputs(NamedTuple):
    """The Predict tab (and ``/predict``, whose client gets the fields that are not state, in this order)."""

    label: dict[str, float] | None  # the confidences, display name -> probability
    overlay: str | None  # the Grad-CAM over the slice (a cached picture)
    heatmap: str | None
    reading: str
    details: dict | None  # the JSON an API user gets
    slice: SessionSlice | None  # session state: the decoded upload
    explained: Answer | None  # session state: the reader's answer, with the Grad-CAMs drawn so far


class EvidenceOutputs(NamedTuple):
    """What the opacity slider and the "show evidence for" choice redraw, without asking the model again."""

    overlay: str
    heatmap: str
    reading: str
    explained: Answer | None


class CompareColumn(NamedTuple):
    """One model's column in the Compare tab."""

    label: dict[str, float] | None
    overlay: str


class CompareOutputs(NamedTuple):
    """The Compare tab (and ``/compare``: each model's label and overlay in the predictors' order, then the summary)."""

    models: dict[str, CompareColumn]  # model name -> its column
    summary: str  # the verdict and the table of answers and timings
    slice: SessionSlice | None
    explained: dict[str, Answer]  # session state: each model's answer, for the slider


class BatchOutputs(NamedTuple):
    """The Batch tab (and ``/batch``), yielded again after every ``WEB_BATCH_SIZE`` files."""

    summary: str
    table: pd.DataFrame  # what a person reads: one column per model
    gallery: list[tuple[str, str]] | None  # (overlay, caption) per file and model
    csv: str | None  # full precision, every class's probability
    entries: list[dict] | None  # session state: thumbnails and maps, for the slider
    rows: list[dict] | None = None  # session state: every row, for the filter and for opening a row in Compare


class HideOutputs(NamedTuple):
    """The "hide a region and ask again" answer."""

    hidden: str  # the slice as the models saw it, with the region filled
    answers: str  # each model's answer before and after


def unchanged(outputs: type[Outputs]) -> Outputs:
    """A result that leaves every output as it shows (an event that turned out to change nothing)."""
    return outputs(*[gr.skip()] * len(outputs._fields))


def refused(error: ImageError) -> str:
    """A refusal's sentence for the page; the log gets its kind only, never the file name."""
    log.info("refused an upload: %s", type(error).__name__)
    return str(error)


def refusal(error: ImageError) -> gr.Error:
    """A refused upload as an error for the page (and an exception for API clients)."""
    return gr.Error(html_text(refused(error)), print_exception=False)  # a pop-up renders HTML


def take_slice(payload, state: SessionSlice | None) -> tuple[LoadedImage, SessionSlice]:
    """The session's decoded slice if this is the same upload, else the upload decoded now."""
    path = upload_path(payload)
    if not path:
        raise gr.Error(NO_UPLOAD, print_exception=False)
    if state is not None and state.key == path:
        if state.image is None:
            raise gr.Error(state.error, print_exception=False)
        return state.image, state
    try:
        image = read_image(path)
    except ImageError as error:
        if not Path(path).exists():
            raise gr.Error("That upload has expired from the app's cache; upload it again.", print_exception=False) from None
        raise refusal(error) from None
    return image, SessionSlice(path, image)


def new_slice(payload, state: SessionSlice | None) -> SliceOutputs:
    """A new picture in an input: decode and check it now, and clear the outputs that were about the old one.

    A refused picture leaves the input (a browser would draw a broken-image strip) and its reason
    goes where the answer would be; the input's own change back to empty keeps that reason. A
    picture that ``open_file`` has just shown is adopted with the notes of its original file.
    """
    path = upload_path(payload)
    if path is None:
        if state is not None and state.image is None and state.key is not None:  # the refused file just removed
            return SliceOutputs(picture=gr.skip(), slice=None, message=gr.skip(), cleared=gr.skip())
        return SliceOutputs(picture=gr.skip(), slice=None, message="", cleared=None)
    if state is not None and state.key in (None, path):  # just shown by open_file, or the same event again
        state.key = path
        return SliceOutputs(picture=gr.skip(), slice=state, message=gr.skip(), cleared=gr.skip())
    try:
        image = read_image(path)
    except ImageError as error:
        return _refused_slice(path, error)
    return SliceOutputs(picture=gr.skip(), slice=SessionSlice(path, image), message=_ready(image), cleared=None)


def _refused_slice(path: str, error: ImageError) -> SliceOutputs:
    """A file the reader refused: the input emptied, the refusal kept as the session's slice, and said where the
    answer would be (so Predict says why instead of reading an old slice again)."""
    message = refused(error)
    return SliceOutputs(picture=None, slice=SessionSlice(path, None, message), message=f"**{markdown(message)}**", cleared=None)


def open_file(path: str | None) -> SliceOutputs:
    """A DICOM, TIFF or other file from the upload button: decode it and show the slice in the image input.

    A refused file empties the input and clears every answer about the slice that was there (Predict
    must not silently read the old slice again), and says why where the answer would be.
    """
    if not path:
        return SliceOutputs(picture=gr.skip(), slice=gr.skip(), message=gr.skip(), cleared=gr.skip())
    try:
        image = read_image(path)
    except ImageError as error:
        return _refused_slice(path, error)
    return SliceOutputs(
        picture=cache_picture(image.pixels, "slice.png"), slice=SessionSlice(None, image), message=_ready(image), cleared=None
    )


def _ready(image: LoadedImage) -> str:
    notes = f" _Read with: {markdown('; '.join(image.notes))}._" if image.notes else ""
    return f"Slice loaded ({image.pixels.shape[1]}x{image.pixels.shape[0]} px).{notes}"


def reader(predictors: dict[str, Predictor]) -> Reader:
    """The reader over the page's predictors; every model call it makes is logged (the browser tests count them)."""
    return Reader(predictors, on_call=lambda model, what: log.info("model call: %s %s", model, what))


def opacity_value(value) -> float:
    """The overlay opacity a request sent, as a number from 0 to 1; one sentence for anything else (an API client's
    text, list or nothing), not Gradio's empty error."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise gr.Error(html_text(not_a_number("overlay opacity", value, 0, 1)), print_exception=False)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:  # NaN fails this too
        raise gr.Error(html_text(not_a_number("overlay opacity", value, 0, 1)), print_exception=False)
    return number


def _model(predictors: dict[str, Predictor], name: str) -> Predictor:
    if not isinstance(name, str):
        raise gr.Error(html_text(not_a_choice("model", name)), print_exception=False)
    try:
        return Reader(predictors).model(name)
    except ReaderError as error:
        raise _page_error(error) from None


def _page_error(error: ReaderError) -> gr.Error:
    """The reader's sentence as an error for the page (and an exception for API clients)."""
    return gr.Error(html_text(str(error)), print_exception=False)


def predict(
    predictors: dict[str, Predictor],
    payload,
    model: str,
    opacity: float,
    evidence: str,
    state: SessionSlice | None,
    outline: bool = False,
) -> PredictOutputs:
    """Predict tab and ``/predict``: class, confidences, Grad-CAM overlay and heatmap, a reading, the JSON."""
    opacity = opacity_value(opacity)
    _model(predictors, model)
    if not isinstance(evidence, str):
        raise gr.Error(html_text(not_a_choice("class to show evidence for", evidence)), print_exception=False)
    return _answer(predictors, payload, state, model, opacity, evidence, outline=outline)


def _answer(
    predictors: dict[str, Predictor],
    payload,
    state: SessionSlice | None,
    model: str,
    opacity: float,
    evidence: str,
    *,
    again: bool = False,
    outline: bool = False,
) -> PredictOutputs:
    """One model's answer for the upload (``again``: the session's slice once more), as the tab's outputs: the reader
    gives the whole answer in one call, and this only hands it to the components (``outline``: with the tumour outline
    of a labelled example over both maps)."""
    image, state = (state.image, state) if again else take_slice(payload, state)
    try:
        answer = reader(predictors).classify(image, model, evidence, opacity)
    except ReaderError as error:
        raise _page_error(error) from None
    notes = "\n\n_Note: " + markdown("; ".join(image.notes)) + "._" if image.notes else ""
    drawn = answer.drawn  # none for a slice the MRI check refused: the slice itself is shown, and why
    mask = tumour_outline(answer.pixels, answer.display) if outline and drawn else None
    return PredictOutputs(
        label=answer.confidences,
        overlay=cache_picture(outlined(drawn.overlay, mask), "overlay.jpg")
        if drawn
        else cache_picture(answer.display, "slice.jpg"),
        heatmap=cache_picture(outlined(drawn.heatmap, mask), "heatmap.jpg") if drawn else None,
        reading=answer.text + notes,
        details=answer.details,
        slice=state,
        explained=answer if drawn else None,
    )


def model_switched(
    predictors: dict[str, Predictor],
    model: str,
    opacity: float,
    evidence: str,
    state: SessionSlice | None,
    explained: Answer | None,
    outline: bool = False,
) -> PredictOutputs:
    """The model choice changed while another model's answer is on screen: the new model answers the same slice at once.

    The session's slice is read again without the file (tens of milliseconds), so the page never shows one model's
    answer under another's name. Nothing on screen yet, or the same model: nothing changes.
    """
    if explained is None or explained.model == model or state is None or state.image is None:
        return unchanged(PredictOutputs)
    _model(predictors, model)
    if not isinstance(evidence, str) or (evidence != TOP_CLASS and evidence not in predictors[model].labels):
        evidence = TOP_CLASS
    return _answer(predictors, None, state, model, opacity_value(opacity), evidence, again=True, outline=outline)


def redraw(
    predictors: dict[str, Predictor], explained: Answer | None, opacity: float, evidence: str, outline: bool = False
) -> EvidenceOutputs:
    """The slider or the class choice moved: redraw from the session's answer (a model call only for a class whose
    Grad-CAM was not drawn before; none for opacity), with the tumour outline when ``outline`` and the slice has one."""
    if explained is None:
        return unchanged(EvidenceOutputs)
    try:
        drawn = reader(predictors).draw(explained, evidence, opacity)
    except ReaderError as error:
        raise _page_error(error) from None
    mask = tumour_outline(explained.pixels, explained.display) if outline else None
    return EvidenceOutputs(
        overlay=cache_picture(outlined(drawn.overlay, mask), "overlay.jpg"),
        heatmap=cache_picture(outlined(drawn.heatmap, mask), "heatmap.jpg"),
        reading=drawn.reading,
        explained=explained,
    )


def evidence_legend(predictors: dict[str, Predictor], explained: Answer | None, evidence: str) -> str:
    """The colour bar under the Predict overlay, for the map on screen: how far up the bar it reaches and what that
    means, as the reader drew it (no model call: the map was drawn just before); nothing while no map is shown."""
    if explained is None or not explained.is_mri:
        return ""
    try:
        drawn = reader(predictors).draw(explained, evidence)
    except ReaderError:
        return ""
    return legend_html(drawn.legend, drawn.strength)


def compare(
    predictors: dict[str, Predictor], payload, opacity: float, state: SessionSlice | None, outline: bool = False
) -> CompareOutputs:
    """Compare tab and ``/compare``: each model's confidences and overlay, then the verdict and timings."""
    opacity = opacity_value(opacity)
    image, state = take_slice(payload, state)
    return compare_slice(predictors, image, state, opacity, outline)


def compare_slice(
    predictors: dict[str, Predictor], image: LoadedImage, state: SessionSlice, opacity: float, outline: bool = False
) -> CompareOutputs:
    """Every model's answer for a decoded slice, drawn: ``compare`` for an upload, a batch row opened in Compare."""
    comparison = reader(predictors).compare(image, opacity)
    mask = tumour_outline(image, display_copy(image.pixels)) if outline else None
    answers, timings, explained = {}, [], {}
    for name, answer in comparison.answers.items():
        prediction = answer.prediction
        if answer.drawn is not None:
            explained[name] = answer
        picture = outlined(answer.drawn.overlay, mask) if answer.drawn is not None else answer.display
        answers[name] = CompareColumn(label=answer.confidences, overlay=cache_picture(picture, f"{name}.jpg"))
        confidence = f" ({prediction.confidence:.0%})" if prediction.is_mri else ""
        shown = " or ".join(display_name(label) for label in prediction.plausible or []) or "–"
        timings.append(f"| {name} | {shown_label(prediction)}{confidence} | {shown} | {answer.seconds * 1000:.0f} ms |")
    header = f"| model | reads the slice as | plausible at {SERVED_LEVEL:.0%} | inference time |\n|---|---|---|---:|\n"
    table = header + "\n".join(timings)
    return CompareOutputs(models=answers, summary=f"{comparison.verdict}\n\n{table}", slice=state, explained=explained)


def recolour_compare(
    predictors: dict[str, Predictor], explained: dict[str, Answer] | None, opacity: float, outline: bool = False
) -> dict[str, Any]:
    """The Compare slider moved: re-blend each cached Grad-CAM (no model call); model name -> overlay, or gr.skip().
    ``outline``: with the tumour outline of a labelled example."""
    draw = reader(predictors).draw
    outlines = {
        name: tumour_outline(answer.pixels, answer.display) if outline else None for name, answer in (explained or {}).items()
    }
    return {
        name: cache_picture(outlined(draw(explained[name], TOP_CLASS, opacity).overlay, outlines[name]), f"{name}.jpg")
        if explained and name in explained
        else gr.skip()
        for name in predictors
    }


def _percent(value) -> str:
    return f"{value:.1%}" if isinstance(value, float) and not math.isnan(value) else ""


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2) :]


def table_frame(rows: list[dict], names: list[str], labels: list[str] | None = None) -> pd.DataFrame:
    """The batch table as a person reads it: one column per model ("Glioma 97.1%"), short headers.

    With ``labels``, a file whose folder names a class gets a mark after each model's answer that is another class
    (``WRONG_MARK``).
    """
    shown = []
    for row in rows:
        line = {"file": row["file"]}
        truth = folder_label(row["file"], labels) if labels else None
        for name in names:
            line[name] = f"{row[f'{name} class']} {_percent(row[f'{name} confidence'])}".strip()
            if _wrong(row, name, truth):
                line[name] += f" {WRONG_MARK}"
            others = [label for label in row.get(f"{name} {PLAUSIBLE}", "").split(" or ") if label][1:]
            if others:  # the set beyond the top class: what is still plausible
                line[name] += " · or " + " or ".join(others)
        if len(names) > 1:
            line["agree"] = row["agree"]
        line["note"] = row["note"]
        shown.append(line)
    return pd.DataFrame(shown, columns=["file", *names, *(["agree"] if len(names) > 1 else []), "note"])


def _gallery_entries(items: list[BatchItem], results: dict[str, list[Prediction | None]], room: int) -> list[dict]:
    """What the gallery draws for up to ``room`` files: a thumbnail, and per model its caption and CAM."""
    entries = []
    for index, item in enumerate(items):
        if item.image is None:
            continue
        if len(entries) == room:
            break
        thumbnail = display_copy(item.image.pixels, THUMBNAIL_SIDE)
        models = []
        for name, predictions in results.items():
            prediction = predictions[index]
            score = f" {_percent(prediction.confidence)}" if prediction.is_mri else ""  # as the table shows it
            models.append(
                (f"{_short(item.name)} · {name}: {shown_label(prediction)}{score}", prediction.cam if prediction.is_mri else None)
            )
        entries.append({"file": item.name, "thumbnail": thumbnail, "models": models})
    return entries


def gallery(entries: list[dict] | None, opacity: float, files: set[str] | None = None) -> list[tuple[str, str]]:
    """Each file's overlay per model, captioned with file, model and class; only ``files``' where they are given."""
    return [
        (
            cache_picture(overlay(entry["thumbnail"], cam, opacity) if cam is not None else entry["thumbnail"], "thumbnail.jpg"),
            caption,
        )
        for entry in entries or []
        if files is None or entry["file"] in files
        for caption, cam in entry["models"]
    ]


# Pages whose Stop ended a running batch (by Gradio session). Stop cancels the batch's event, but a group of files
# already being classified finishes in its worker thread, and its "so far" yield could reach the page after Stop's
# answer and put the running summary back; the batch checks this before each yield and ends instead.
_STOPPED: set[str] = set()


def batch(
    predictors: dict[str, Predictor],
    paths: list[str] | None,
    opacity: float,
    progress=gr.Progress(),
    request: gr.Request = None,
) -> Iterator[BatchOutputs]:
    """Batch tab and ``/batch``: a summary, the table, captioned overlays and the CSV (full precision).

    A generator: the table and CSV fill in after every ``WEB_BATCH_SIZE`` files, so Stop (the
    tab's ``cancels``) or a closed page (Gradio drops a gone client's generator between yields)
    ends the work there and keeps what is done. API clients get the last yield, the whole batch.
    """
    if not paths:
        raise gr.Error("Upload some images or a .zip of images first.", print_exception=False)
    gone = sum(1 for path in paths if not Path(path).exists())
    if gone:
        raise gr.Error(
            f"{gone} of the {len(paths)} uploaded files have expired from the app's cache (the About tab says how long "
            "it keeps them); upload them again.",
            print_exception=False,
        )
    try:
        total = check_limit(paths)
    except ImageError as error:
        raise refusal(error) from None
    log.info("model call: batch of %d files", total)
    session = getattr(request, "session_hash", None)
    _STOPPED.discard(session)
    try:
        with in_use(paths):  # the sweep must not take an input that the batch has not read yet
            yield from _batch_steps(predictors, paths, total, opacity, progress, lambda: session in _STOPPED)
    finally:
        _STOPPED.discard(session)


@dataclass
class BatchSoFar:
    """What a batch has produced: rows, gallery entries, and the first row of each picture (by content)."""

    rows: list[dict] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    first_row: dict[str, int] = field(default_factory=dict)  # pixel hash -> row index
    duplicates: int = 0
    readable: int = 0


def _fold_duplicates(items: list[BatchItem], done: BatchSoFar) -> tuple[list[BatchItem], dict[str, list[str]]]:
    """Items whose picture was not seen yet, and the repeats within them (hash -> names) to note once their rows exist.

    A repeat of an earlier row (same pixels, any name or format) becomes a note on that row at once.
    """
    fresh, pending = [], {}
    for item in items:
        key = hashlib.sha1(item.image.pixels.tobytes()).hexdigest() if item.image is not None else None
        if key in pending:  # a repeat within this group: its first copy's row is not added yet
            done.duplicates += 1
            pending[key].append(item.name)
            continue
        first = done.first_row.get(key) if key else None
        if first is not None:
            done.duplicates += 1
            _note_duplicate(done.rows[first], item.name)
            continue
        if key:
            pending[key] = []
            done.first_row[key] = len(done.rows) + len(fresh)
        fresh.append(item)
    return fresh, pending


def _note_duplicate(row: dict, name: str) -> None:
    row["note"] = "; ".join(filter(None, [row["note"], f"the same picture was also uploaded as {name}"]))


def _batch_steps(
    predictors: dict[str, Predictor], paths: list[str], total: int, opacity: float, progress, stopped=lambda: False
) -> Iterator[BatchOutputs]:
    """Read, fold duplicates, classify and tabulate ``WEB_BATCH_SIZE`` files at a time, yielding the outputs so far
    (none once ``stopped()``: Stop's answer is the page's last word)."""
    names, labels = list(predictors), next(iter(predictors.values())).labels
    done, read, modelled = BatchSoFar(), 0, 0  # half the bar reads files, half runs the models
    progress(0.0, desc=f"reading 1/{total}")

    def one_read(item: BatchItem) -> None:
        nonlocal read
        read += 1
        progress(0.5 * (read + modelled) / total, desc=f"read {read}/{total}")

    for items in iter_decoded(paths, WEB_BATCH_SIZE, read=one_read):
        fresh, pending = _fold_duplicates(items, done)
        step = partial(_model_step, progress, 0.5 * (read + modelled) / total, 0.5 * len(items) / total, total)
        results = run_batch(predictors, fresh, WEB_BATCH_SIZE, progress=step)
        modelled += len(items)
        done.rows += result_rows(fresh, results)  # only rows and the first thumbnails outlive the batch
        for key, repeats in pending.items():
            for name in repeats:
                _note_duplicate(done.rows[done.first_row[key]], name)
        done.entries += _gallery_entries(fresh, results, GALLERY_FILES - len(done.entries))
        done.readable += sum(1 for item in fresh if item.image is not None)
        log.info("batch: %d/%d files", read, total)
        if stopped():
            log.info("batch: stopped after %d/%d files", read, total)
            return
        yield _batch_outputs(done, names, labels, opacity, f"**{read}/{total} files so far…**")
    yield _batch_outputs(done, names, labels, opacity, None)


def _model_step(progress, base: float, span: float, total: int, fraction: float, text: str) -> None:
    """``run_batch``'s progress ("cnn: 3/8 images") placed on the whole batch's bar."""
    progress(base + span * fraction, desc=f"{text} (batch of {total})")


def _batch_outputs(done: BatchSoFar, names: list[str], labels: list[str], opacity: float, status: str | None) -> BatchOutputs:
    """The tab's outputs for the rows so far: the summary (or ``status`` while running), table, gallery, CSV, entries."""
    text = summary(done.rows, names)
    if done.duplicates:
        text += f" · {done.duplicates} duplicate{'s' * (done.duplicates != 1)} folded into the first copy's row (see its note)"
    if done.readable > GALLERY_FILES:
        text += f" · overlays shown for the first {GALLERY_FILES} readable files; the table and CSV hold all"
    report = labelled_report(done.rows, names, labels)
    text = f"{status} {text}" if status else text + (f"\n\n{report}" if report else "")
    csv_path = cache_file(rows_to_csv(done.rows, columns(names, labels)).encode(), "tumor_ai_batch.csv")
    return BatchOutputs(
        summary=text,
        table=table_frame(done.rows, names, labels),
        gallery=gallery(done.entries, opacity),
        csv=csv_path,
        entries=done.entries,
        rows=done.rows,
    )


def stop_batch(running: bool, shown: str | None, request: gr.Request = None) -> tuple[str, Any, bool]:
    """Stop: the status line, the summary without its "so far…" (unchanged when no batch ran), and not running."""
    if not running:
        return NO_BATCH_RUNNING, gr.skip(), False
    if getattr(request, "session_hash", None) is not None:
        _STOPPED.add(request.session_hash)
    status, rest = batch_stopped(shown or "")
    return status, rest, False


def settle_stopped(status: str | None, shown: str | None):
    """After Stop's answer, once more: a stopped batch's summary without its "so far…". A message the cancelled batch had
    in flight can land on the page after Stop's own answer; this second, later answer has the last word."""
    if not (status or "").startswith(BATCH_STOPPED) or not BATCH_RUNNING.match(shown or ""):
        return gr.skip()
    return batch_stopped(shown)[1]


def recolour_batch(entries: list[dict] | None, opacity: float, rows: list[dict] | None = None, view: list[int] | None = None):
    """The Batch slider moved, or the filter: re-blend the cached thumbnails' Grad-CAMs (no model call), for the rows
    the filter shows (``view``, ``filter_batch``'s; None: every row)."""
    if entries is None:
        return gr.skip()
    files = None if view is None else {rows[index]["file"] for index in view if 0 <= index < len(rows or [])}
    return gallery(entries, opacity, files)


def editable_slice(state: SessionSlice | None):
    """The session's slice for the "hide a region" editor to paint on (after Predict or Compare)."""
    if state is None or state.image is None:
        return gr.skip()
    return cache_picture(display_copy(state.image.pixels), "slice.png")


def painted_region(editor: dict | None, shape: tuple[int, int]) -> np.ndarray:
    """What a person painted in the editor (any layer, any colour) as a mask at the slice's own size."""
    from PIL import Image

    strokes = [np.asarray(layer)[..., 3] > 0 for layer in (editor or {}).get("layers") or [] if _is_rgba(layer)]
    painted = np.logical_or.reduce([stroke for stroke in strokes if stroke.shape == strokes[0].shape]) if strokes else None
    if painted is None or not painted.any():
        raise gr.Error(NOTHING_PAINTED, print_exception=False)
    if painted.shape != shape:
        resized = Image.fromarray(painted.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        painted = np.asarray(resized) > 127
    return painted


def _is_rgba(layer) -> bool:
    """A paint layer as the editor sends it: height x width x RGBA, transparent where nothing was painted."""
    return layer is not None and np.ndim(layer) == 3 and np.shape(layer)[-1] == 4


def hide_and_ask(predictors: dict[str, Predictor], editor: dict | None, state: SessionSlice | None) -> HideOutputs:
    """Hide a region and ask again: fill the painted region from its surroundings, and every model answers again."""
    if state is None or state.image is None:
        raise gr.Error(NO_SLICE_TO_HIDE, print_exception=False)
    pixels = state.image.pixels
    hidden = reader(predictors).hide(pixels, painted_region(editor, pixels.shape[:2]))
    return HideOutputs(hidden=cache_picture(display_copy(hidden.pixels), "hidden.jpg"), answers=hidden.text)


# Teaching: an example's true class (held back until the models answer), its tumour outline over the maps, and a
# labelled batch's errors and disagreements, a row of which opens in Compare.

WRONG_MARK = "✗"  # after a model's answer in the batch table when the file's folder names another class
BATCH_VIEWS = ("all", "errors", "disagreements")


def tumour_outline(image: LoadedImage | np.ndarray, display: np.ndarray) -> np.ndarray | None:
    """The tumour outline of a labelled example at the display's size, or None for any other slice."""
    pixels = image.pixels if isinstance(image, LoadedImage) else image
    return examples_book().outline(pixels, display.shape[:2])


def show_outline(
    predictors: dict[str, Predictor], on: bool, explained: Answer | None, opacity: float, evidence: str
) -> EvidenceOutputs:
    """The Predict tab's outline toggle: redraw the overlay and heatmap with the outline, or without (no model call)."""
    return redraw(predictors, explained, opacity, evidence, outline=bool(on))


def show_outline_compare(
    predictors: dict[str, Predictor], on: bool, explained: dict[str, Answer] | None, opacity: float
) -> dict[str, Any]:
    """The Compare tab's outline toggle: each model's overlay redrawn with the outline, or without (no model call)."""
    return recolour_compare(predictors, explained, opacity, outline=bool(on))


def teaching(
    predictors: dict[str, Predictor],
    state: SessionSlice | None,
    explained: Answer | dict[str, Answer] | None,
    guess_first: bool,
    outline: bool,
) -> str:
    """The teaching panel: the slice's true class (once the models have answered, when guessing first) and the outline.

    The true class is a labelled example's (matched by content) or a labelled batch row's folder; ``explained`` is
    the tab's session state (one model's answer in Predict, each model's in Compare), None until they answer.
    """
    if state is None or state.image is None:
        return ""
    example = examples_book().find(state.image.pixels)
    truth, case = (example.label, example.case) if example else (state.truth, None)
    if explained is None:
        answers = None
    elif isinstance(explained, Answer):
        answers = {explained.model: explained.prediction}
    else:  # Compare: a model missing from its answers refused the slice
        answers = {name: explained[name].prediction if name in explained else None for name in predictors}
    text = example_truth(truth, case, bool(guess_first), answers, from_folder=example is None)
    if outline:
        has_outline = example is not None and example.mask is not None
        text = f"{text}\n\n_{outline_note(has_outline)}_".strip()
    elif truth is None:
        return ""
    return text


def _wrong(row: dict, name: str, truth: str | None) -> bool:
    """Whether a model's answer in a batch row is another class than its folder's (a refusal counts: it is an MRI)."""
    if truth is None or truth == ANY_TUMOUR or row[f"{name} class"] == "error":
        return False
    return row[f"{name} class"] != display_name(truth)


def filter_batch(
    rows: list[dict] | None, which: str, names: list[str], labels: list[str]
) -> tuple[pd.DataFrame, str, list[int] | None]:
    """The batch table for ``which`` view (all rows, the errors, the disagreements), a line on it, and the rows shown."""
    if which not in BATCH_VIEWS:
        raise gr.Error(html_text(not_a_choice("rows to show", which)), print_exception=False)
    rows = rows or []
    truths = [folder_label(row["file"], labels) for row in rows]
    labelled = sum(1 for truth in truths if truth not in (None, ANY_TUMOUR))
    if which == "all":
        shown = list(range(len(rows)))
    elif which == "errors":
        shown = [index for index, row in enumerate(rows) if any(_wrong(row, name, truths[index]) for name in names)]
    else:
        shown = [index for index, row in enumerate(rows) if row.get("agree") == "no"]
    table = table_frame([rows[index] for index in shown], names, labels)
    note = batch_view(which, len(shown), len(rows), labelled) if rows else ""
    return table, note, None if which == "all" else shown


class OpenedOutputs(NamedTuple):
    """A batch row opened in Compare: the slice in Compare's input, the models' answers, the truth, the tab shown."""

    picture: str
    compare: CompareOutputs
    teaching: str
    cleared: Any  # what was about Compare's old slice and is not an answer (the hidden-region block): None clears it
    tab: Any


def open_in_compare(
    predictors: dict[str, Predictor],
    rows: list[dict] | None,
    view: list[int] | None,
    paths: list[str] | None,
    opacity: float,
    outline: bool,
    guess_first: bool,
    index: int,
    file: str | None = None,
) -> OpenedOutputs:
    """A selected batch row: its slice read again from the batch's files, every model's answer in Compare, that tab shown.

    The row is found by its file name (``file``: the table may have been sorted on the page), else by its place in the
    rows shown (``view``: the filter's). The slice's folder (a labelled batch) is its true class in Compare's teaching
    panel. A refused file has no slice.
    """
    rows = rows or []
    shown = view if view is not None else list(range(len(rows)))
    by_name = [position for position in shown if rows[position]["file"] == file] if file is not None else []
    position = by_name[0] if by_name else (shown[index] if 0 <= index < len(shown) else -1)  # a sorted table: by name
    if not 0 <= position < len(rows):
        return unchanged(OpenedOutputs)
    row = rows[position]
    item = next((decode(name, source) for name, source in iter_inputs(paths or [], keep=lambda name: name == row["file"])), None)
    if item is None:
        raise gr.Error(html_text(NO_BATCH_FILE), print_exception=False)
    if item.image is None:
        raise gr.Error(html_text(item.error or NO_BATCH_FILE), print_exception=False)
    labels = next(iter(predictors.values())).labels
    truth = folder_label(row["file"], labels)
    state = SessionSlice(None, item.image, truth=None if truth == ANY_TUMOUR else truth)  # adopted by the input's change
    answer = compare_slice(predictors, item.image, state, opacity_value(opacity), outline)
    return OpenedOutputs(
        picture=cache_picture(item.image.pixels, "slice.png"),
        compare=answer,
        teaching=teaching(predictors, state, answer.explained, guess_first, outline),
        cleared=None,
        tab=gr.Tabs(selected="compare"),
    )
