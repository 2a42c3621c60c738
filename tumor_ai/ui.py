"""The Gradio app: Predict, Compare, Batch and About tabs over a set of loaded predictors.

Handlers only read the upload, call ``tumor_ai.inference`` / ``tumor_ai.batch`` and lay out the
answer; user errors (``ImageError``) become ``gr.Error`` messages and the app keeps serving.
Named API endpoints: ``/predict``, ``/compare``, ``/batch`` (see the README for a
``gradio_client`` snippet).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tumor_ai import DISCLAIMER  # noqa: E402
from tumor_ai.batch import expand_inputs, result_rows, rows_to_csv, run_batch, shown_label  # noqa: E402
from tumor_ai.explain import DEFAULT_OPACITY, heatmap, overlay, reading  # noqa: E402
from tumor_ai.imaging import ImageError, LoadedImage, read_image  # noqa: E402
from tumor_ai.inference import Prediction, Predictor  # noqa: E402
from tumor_ai.labels import display_name  # noqa: E402
from tumor_ai.models import CARD_FILE  # noqa: E402
from tumor_ai.mri_check import MESSAGE as NOT_MRI_MESSAGE  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.jpg"))
EXAMPLE_NAMES = {path.name for path in EXAMPLES}
UPLOAD_TYPES = ["image", ".dcm", ".dicom", ".tif", ".tiff", ".bmp", ".webp"]
BATCH_TYPES = UPLOAD_TYPES + [".zip"]
PRIVACY = (
    "**Nothing is kept.** An upload is read into memory and its temporary file is deleted when the "
    "request ends; the pictures the app draws are purged from its cache within ten minutes; image "
    "content is never written to the logs."
)
log = logging.getLogger("tumor_ai.ui")


def _take_upload(path: str | None) -> LoadedImage:
    """Decode an upload into memory and delete its temporary file; a bad one raises a readable error."""
    if not path:
        raise gr.Error("Upload an MRI slice first (JPG, PNG, BMP, TIFF, WebP or DICOM).")
    try:
        return read_image(path)  # checks the size before reading, keeps the pixels in memory
    except ImageError as error:
        log.info("refused an upload: %s", type(error).__name__)
        raise gr.Error(str(error)) from None
    finally:
        _forget(path)


def _forget(path: str) -> None:
    """Delete an upload's temporary file once read; Gradio's cached example files stay."""
    if Path(path).name not in EXAMPLE_NAMES:
        Path(path).unlink(missing_ok=True)


def _details(model: str, prediction: Prediction, seconds: float, image: LoadedImage) -> dict:
    """The JSON an API user gets: the class, or ``null`` and ``is_brain_mri: false``."""
    return {
        "model": model,
        "is_brain_mri": prediction.is_mri,
        "label": prediction.label if prediction.is_mri else None,
        "display_name": display_name(prediction.label) if prediction.is_mri else None,
        "confidence": round(prediction.confidence, 4) if prediction.is_mri else None,
        "probabilities": {k: round(v, 4) for k, v in prediction.probabilities.items()} if prediction.is_mri else None,
        "mri_score": prediction.mri_score,
        "message": None if prediction.is_mri else NOT_MRI_MESSAGE,
        "seconds": round(seconds, 4),
        "notes": image.notes,
    }


def _label_value(prediction: Prediction) -> dict[str, float] | None:
    if not prediction.is_mri:
        return None
    return {display_name(label): p for label, p in prediction.probabilities.items()}


def _shown_source(source: str) -> str:
    """A local model path relative to the working directory (no machine paths on a public page)."""
    if str(source).startswith("hf://"):
        return str(source)
    try:
        return os.path.relpath(source)
    except ValueError:
        return Path(source).name


def _card_markdown(predictor: Predictor) -> tuple[str, str | None]:
    """A model card without its front matter and image links, and its confusion-matrix PNG."""
    folder = predictor.folder or Path(predictor.source)
    card = folder / CARD_FILE
    text = card.read_text() if card.exists() else f"# {predictor.name}\n\nNo model card found."
    if text.startswith("---"):
        text = text.split("---", 2)[2]
    text = "\n".join(line for line in text.splitlines() if not line.startswith("!["))
    matrix = folder / "confusion_matrix.png"
    return text, str(matrix) if matrix.exists() else None


def build_app(predictors: dict[str, Predictor], sources: dict[str, str] | None = None, cache_examples: bool = True) -> gr.Blocks:
    """The four-tab Blocks app over ``predictors`` (name -> Predictor), in the order given.

    Example outputs are computed once when the app is built (``cache_examples``), so clicking an
    example costs nothing.
    """
    names = list(predictors)
    sources = sources or {name: predictor.source for name, predictor in predictors.items()}

    def predict(path: str | None, model: str, opacity: float):
        image = _take_upload(path)
        if model not in predictors:
            raise gr.Error(f"Unknown model '{model}'; choose one of {names}.")
        prediction, seconds = predictors[model].predict_one(image.pixels)
        details = _details(model, prediction, seconds, image)
        if not prediction.is_mri:
            return None, image.pixels, None, f"**{NOT_MRI_MESSAGE}** {DISCLAIMER}", details
        text = reading(prediction.label, prediction.confidence, prediction.cam, f"The {model} model")
        if image.notes:
            text += "\n\n_Note: " + "; ".join(image.notes) + "._"
        return (
            _label_value(prediction),
            overlay(image.pixels, prediction.cam, opacity),
            heatmap(prediction.cam, image.pixels.shape[:2]),
            text,
            details,
        )

    def compare(path: str | None, opacity: float):
        image = _take_upload(path)
        outputs, shown, summary = [], [], []
        for name in names:
            prediction, seconds = predictors[name].predict_one(image.pixels)
            shown.append(shown_label(prediction))
            outputs += [
                _label_value(prediction),
                overlay(image.pixels, prediction.cam, opacity) if prediction.is_mri else image.pixels,
            ]
            confidence = f" ({prediction.confidence:.0%})" if prediction.is_mri else ""
            summary.append(f"| {name} | {shown[-1]}{confidence} | {seconds * 1000:.0f} ms |")
        verdict = "The models **agree**." if len(set(shown)) == 1 else "The models **disagree**: look at both overlays."
        table = "| model | reads the slice as | inference time |\n|---|---|---:|\n" + "\n".join(summary)
        return (*outputs, f"{verdict}\n\n{table}\n\n{DISCLAIMER}")

    def batch(paths: list[str] | None, opacity: float, progress=gr.Progress()):
        if not paths:
            raise gr.Error("Upload some images or a .zip of images first.")
        try:
            items = expand_inputs(paths)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        finally:
            for path in paths:
                _forget(path)
        progress(0.0, desc="starting")
        results = run_batch(predictors, items, progress=lambda fraction, text: progress(fraction, desc=text))
        rows = result_rows(items, results)
        gallery = []
        for index, item in enumerate(items):
            if item.image is None:
                continue
            for name in names:
                prediction = results[name][index]
                caption = f"{item.name} · {name}: {shown_label(prediction)}"
                picture = overlay(item.image.pixels, prediction.cam, opacity) if prediction.is_mri else item.image.pixels
                gallery.append((_thumbnail(picture), caption))
        with tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="tumor_ai_batch_", delete=False) as handle:
            handle.write(rows_to_csv(rows))
        return pd.DataFrame(rows), gallery, handle.name

    # Every 5 minutes Gradio deletes cached files older than 5 minutes: gone within 10 minutes.
    with gr.Blocks(title="tumor-ai: brain-tumour MRI classifier", analytics_enabled=False, delete_cache=(300, 300)) as app:
        gr.Markdown(
            "# tumor-ai\nSort a brain MRI slice into glioma, meningioma, pituitary tumour or no tumour with two Keras "
            "models, and see where each one looked (Grad-CAM).\n\n"
            f"> ⚠️ **{DISCLAIMER}**"
        )
        with gr.Tab("Predict", id="predict"):
            with gr.Row():
                with gr.Column(scale=1):
                    p_file = gr.File(
                        label="MRI slice (JPG, PNG, BMP, TIFF, WebP, DICOM)",
                        file_types=UPLOAD_TYPES,
                        type="filepath",
                        elem_id="predict-file",
                    )
                    p_model = gr.Radio(names, value=names[-1], label="Model")
                    p_opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity")
                    p_button = gr.Button("Predict", variant="primary", elem_id="predict-button")
                with gr.Column(scale=2):
                    p_label = gr.Label(num_top_classes=len(predictors[names[0]].labels), label="Confidence (calibrated)")
                    with gr.Row():
                        p_overlay = gr.Image(label="Grad-CAM overlay", type="numpy", format="png")
                        p_heatmap = gr.Image(label="Grad-CAM heatmap", type="numpy", format="png")
                    p_reading = gr.Markdown(elem_id="predict-reading")
                    with gr.Accordion("Details (JSON, as the API returns it)", open=False):
                        p_details = gr.JSON()
            p_outputs = [p_label, p_overlay, p_heatmap, p_reading, p_details]
            p_button.click(predict, [p_file, p_model, p_opacity], p_outputs, api_name="predict", concurrency_id="cpu")
            if EXAMPLES:
                gr.Examples(
                    [[str(path), names[-1], DEFAULT_OPACITY] for path in EXAMPLES],
                    inputs=[p_file, p_model, p_opacity],
                    outputs=p_outputs,
                    fn=predict,
                    cache_examples=cache_examples,
                    label="Examples (one per class, CC0, from the validation split)",
                    example_labels=[path.stem.replace("_", " ") for path in EXAMPLES],
                )
        with gr.Tab("Compare", id="compare"):
            with gr.Row():
                with gr.Column(scale=1):
                    c_file = gr.File(label="MRI slice", file_types=UPLOAD_TYPES, type="filepath", elem_id="compare-file")
                    c_opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity")
                    c_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                    c_summary = gr.Markdown(elem_id="compare-summary")
                c_outputs = []
                for name in names:
                    with gr.Column(scale=1):
                        gr.Markdown(f"### {name}")
                        c_outputs.append(gr.Label(num_top_classes=len(predictors[name].labels), label=f"{name} confidence"))
                        c_outputs.append(gr.Image(label=f"{name} Grad-CAM", type="numpy", format="png"))
            c_button.click(compare, [c_file, c_opacity], [*c_outputs, c_summary], api_name="compare", concurrency_id="cpu")
            if EXAMPLES:
                gr.Examples(
                    [[str(path), DEFAULT_OPACITY] for path in EXAMPLES],
                    inputs=[c_file, c_opacity],
                    outputs=[*c_outputs, c_summary],
                    fn=compare,
                    cache_examples=cache_examples,
                    example_labels=[path.stem.replace("_", " ") for path in EXAMPLES],
                )
        with gr.Tab("Batch", id="batch"):
            with gr.Row():
                with gr.Column(scale=1):
                    b_files = gr.File(
                        label="Images or a .zip of images",
                        file_count="multiple",
                        file_types=BATCH_TYPES,
                        type="filepath",
                        elem_id="batch-files",
                    )
                    b_opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity")
                    b_button = gr.Button("Run batch", variant="primary", elem_id="batch-button")
                    b_csv = gr.File(label="Results (CSV)")
                with gr.Column(scale=2):
                    b_table = gr.Dataframe(label="Results", wrap=True, elem_id="batch-table")
                    b_gallery = gr.Gallery(label="Grad-CAM overlays", columns=4, height="auto")
            b_button.click(batch, [b_files, b_opacity], [b_table, b_gallery, b_csv], api_name="batch", concurrency_id="cpu")
        with gr.Tab("About", id="about"):
            gr.Markdown(
                f"> ⚠️ **{DISCLAIMER}**\n\n{PRIVACY}\n\n"
                + "Models loaded: "
                + ", ".join(f"`{name}` from `{_shown_source(sources.get(name, predictors[name].source))}`" for name in names)
            )
            for name in names:
                text, matrix = _card_markdown(predictors[name])
                with gr.Accordion(f"Model card: {name}", open=name == names[0]):
                    gr.Markdown(text)
                    if matrix:
                        gr.Image(
                            matrix, label=f"{name}: confusion matrix on the validation split", show_label=True, interactive=False
                        )
    return app


def _thumbnail(pixels: np.ndarray, side: int = 256) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(pixels)
    image.thumbnail((side, side))
    return np.asarray(image)
