"""The app's actions as plain functions: the Assistant tab, ``gradio_client`` and MCP agents call these.

Each tool reads a slice the way the tabs do (``tumor_ai.core.imaging``), answers from the models and
their metadata (no figure is made up: every number is a model output or a value from
``tumor_ai.json``), and ends with the research-not-diagnosis line. A ``Toolbox`` holds the loaded
predictors, the only state the tools need; ``tumor_ai.app.ui`` publishes its methods as the app's
tool endpoints (and so as MCP tools), and ``tumor_ai.app.assistant`` calls them from the chat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tumor_ai import DISCLAIMER
from tumor_ai.core.explain import display_copy, listed, overlay, reading
from tumor_ai.core.imaging import ImageError, LoadedImage, read_image
from tumor_ai.core.inference import Prediction, Predictor
from tumor_ai.core.mri_check import MESSAGE as NOT_MRI_MESSAGE
from tumor_ai.model.labels import display_name
from tumor_ai.publish.card import map_trust

TOOL_OPACITY = 0.45  # the overlay's opacity in tool answers (the tabs have a slider)
GRAD_CAM_TEXT = (
    "Grad-CAM (and its variants such as LayerCAM) draws where in the slice a model found the evidence for one "
    "class. It takes a convolution layer's feature maps, weighs each map by how much raising it would raise the "
    "class's score (the gradient), adds them up and keeps the positive part: red on the overlay is where the "
    "evidence was strongest. It shows what the model used, not where the tumour is: a model can find evidence in "
    "the skull, the image border or the scanner's contrast. That is why tumor-ai measures, on slices with a "
    "drawn tumour outline, how often each map's peak lies on the tumour (the pointing game) and whether the "
    "model still names the tumour class when the tumour is erased."
)


class ToolError(ValueError):
    """A request a tool cannot answer (unreadable file, unknown model or class), said in one sentence."""


@dataclass
class ToolResult:
    """A tool's answer: Markdown text for a person or an agent, and the pictures it refers to (file paths)."""

    text: str
    pictures: list[np.ndarray] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


class Toolbox:
    """The tools over a set of loaded predictors (name -> Predictor), in the order the app lists them."""

    def __init__(self, predictors: dict[str, Predictor]):
        self.predictors = predictors

    @property
    def names(self) -> list[str]:
        return list(self.predictors)

    @property
    def labels(self) -> list[str]:
        return next(iter(self.predictors.values())).labels

    def model(self, name: str) -> Predictor:
        if name not in self.predictors:
            raise ToolError(f"Unknown model '{name}'; choose one of: {', '.join(self.predictors)}.")
        return self.predictors[name]

    def label(self, name: str) -> str:
        """A class from its label or display name, any case ("Meningioma", "no tumour", "notumor")."""
        wanted = _plain(name)
        for label in self.labels:
            if wanted in (_plain(label), _plain(display_name(label))):
                return label
        choices = ", ".join(display_name(label) for label in self.labels)
        raise ToolError(f"Unknown class '{name}'; choose one of: {choices}.")

    def classify_slice(self, image: LoadedImage, model: str) -> ToolResult:
        """One model's class, calibrated confidence, plausible set and Grad-CAM overlay for one slice."""
        predictor = self.model(model)
        prediction, _ = predictor.predict_one(image.pixels)
        if not prediction.is_mri:
            return ToolResult(f"{NOT_MRI_MESSAGE} {DISCLAIMER}")
        display = display_copy(image.pixels)
        text = reading(
            prediction.label,
            prediction.confidence,
            prediction.cam,
            f"The {model} model",
            caveat=map_trust(predictor.metadata),
            plausible=_plausible(prediction),
            reminder=DISCLAIMER,  # no page header around an agent's answer
        )
        return ToolResult(text, [overlay(display, prediction.cam, TOOL_OPACITY)], [_caption(model, prediction)])

    def compare_models(self, image: LoadedImage) -> ToolResult:
        """Every model's answer for one slice, which is surer, and whether they agree, with each overlay."""
        display = display_copy(image.pixels)
        predictions = {name: predictor.predict_one(image.pixels)[0] for name, predictor in self.predictors.items()}
        lines, pictures, captions = [], [], []
        for name, prediction in predictions.items():
            lines.append(f"- **{name}**: {_answer(prediction)}")
            if prediction.is_mri:
                pictures.append(overlay(display, prediction.cam, TOOL_OPACITY))
                captions.append(_caption(name, prediction))
        return ToolResult(f"{agreement(predictions)}\n\n" + "\n".join(lines) + f"\n\n{DISCLAIMER}", pictures, captions)

    def explain_class(self, image: LoadedImage, label: str, model: str) -> ToolResult:
        """Where one model found evidence for a class a person names, and that class's probability."""
        predictor, chosen = self.model(model), self.label(label)
        prediction, _ = predictor.predict_one(image.pixels)
        if not prediction.is_mri:
            return ToolResult(f"{NOT_MRI_MESSAGE} {DISCLAIMER}")
        cam = predictor.explain(image.pixels, predictor.labels.index(chosen))
        text = (
            f"The {model} model gives **{display_name(chosen)}** a probability of "
            f"{prediction.probabilities[chosen]:.1%}. "
            + reading(
                prediction.label,
                prediction.confidence,
                cam,
                f"Its answer is {display_name(prediction.label)}; the {model} model",
                chosen,
                map_trust(predictor.metadata),
                _plausible(prediction),
                reminder=DISCLAIMER,
            )
        )
        caption = f"{model}: evidence for {display_name(chosen)} ({prediction.probabilities[chosen]:.0%})"
        return ToolResult(text, [overlay(display_copy(image.pixels), cam, TOOL_OPACITY)], [caption])

    def model_figures(self, model: str, label: str = "") -> ToolResult:
        """A model's validation figures (accuracy, macro-F1, per class), where its map points, and its prediction sets."""
        metadata = self.model(model).metadata
        if not metadata.metrics:
            return ToolResult(f"The {model} model's metadata holds no validation figures.")
        validation, per_class = metadata.metrics.validation, metadata.metrics.validation_per_class
        chosen = [self.label(label)] if label else list(per_class)
        lines = [
            f"**{metadata.title or model}** on its {validation.images} held-out validation images (a split that keeps "
            f"copies of one image on one side): accuracy {validation.accuracy:.1%}, macro-F1 {validation.macro_f1:.1%}."
        ]
        pointing = ((metadata.localisation or {}).get("pointing_game") or {}).get("per_class", {})
        for name in chosen:
            figures = per_class.get(name)
            if figures:
                line = (
                    f"- {display_name(name)}: recall {figures.recall:.1%} (of {figures.support} slices), "
                    f"precision {figures.precision:.1%}, F1 {figures.f1:.1%}"
                )
                if name in pointing:
                    line += f"; its map's peak lay on the tumour in {pointing[name]['value']:.0%} of outlined slices"
                lines.append(line + ".")
        conformal = metadata.conformal or {}
        sets = conformal.get("cross_fit", {}).get(str(conformal.get("served_level")))
        if sets:
            lines.append(
                f"Its {float(conformal['served_level']):.0%} prediction sets held the true class for "
                f"{sets['coverage']:.1%} of validation slices, with {sets['set_size']:.2f} classes on average."
            )
        lines.append("These are figures on this dataset's own held-out slices, not on patients from a clinic. " + DISCLAIMER)
        return ToolResult("\n".join(lines))

    def summarise_batch(self, paths: list[str]) -> ToolResult:
        """Every model's class counts over many slices (or a .zip), and on how many the models disagree."""
        from tumor_ai.core.batch import check_limit, iter_batches, result_rows, summary

        if not paths:
            raise ToolError("Give some slices or a .zip of slices first.")
        try:
            check_limit(paths)
        except ImageError as error:
            raise ToolError(str(error)) from None
        rows = [row for items, results in iter_batches(self.predictors, paths) for row in result_rows(items, results)]
        return ToolResult(summary(rows, self.names) + f". {DISCLAIMER}")

    def explain_grad_cam(self) -> ToolResult:
        """What Grad-CAM is, in plain words, and how far each served model's map can be trusted."""
        maps = [f"- **{name}**: {map_trust(predictor.metadata).strip()}" for name, predictor in self.predictors.items()]
        return ToolResult(GRAD_CAM_TEXT + "\n\n" + "\n".join(maps))


def read_slice(path: str | None) -> LoadedImage:
    """The slice at ``path`` as every tool reads it; one sentence when there is none or it cannot be read."""
    if not path:
        raise ToolError("Give a brain MRI slice first (JPG, PNG, BMP, TIFF, WebP or DICOM).")
    try:
        return read_image(path)
    except ImageError as error:
        raise ToolError(str(error)) from None


def agreement(predictions: dict[str, Prediction]) -> str:
    """Which models agree, and which is surest, in one sentence."""
    refused = [name for name, p in predictions.items() if not p.is_mri]
    if refused:
        return f"{NOT_MRI_MESSAGE} (the MRI check of {listed(refused)})"
    labels = {p.label for p in predictions.values()}
    surest = max(predictions, key=lambda name: predictions[name].confidence)
    word = "surer" if len(predictions) == 2 else "surest"
    if len(labels) > 1:
        surest_text = f"{surest} is the {word} ({predictions[surest].confidence:.0%})"
        return f"The models disagree; {surest_text}. Treat this slice as uncertain."
    label = display_name(next(iter(labels)))
    if len(predictions) == 1:
        return f"The model reads {label}."
    return f"All {len(predictions)} models read {label}; {surest} is the {word} ({predictions[surest].confidence:.0%})."


def _answer(prediction: Prediction) -> str:
    if not prediction.is_mri:
        return "refused by its MRI check (no class given)"
    plausible = _plausible(prediction)
    return f"{display_name(prediction.label)}, {prediction.confidence:.1%}" + (f" ({plausible})" if plausible else "")


def _plausible(prediction: Prediction) -> str:
    from tumor_ai.core.conformal import SERVED_LEVEL, describe

    if not prediction.plausible:
        return ""
    return describe(prediction.plausible, SERVED_LEVEL, len(prediction.probabilities), display_name)


def _caption(model: str, prediction: Prediction) -> str:
    return f"{model}: {display_name(prediction.label)} ({prediction.confidence:.0%})"


def _plain(text: str) -> str:
    return "".join(character for character in text.lower() if character.isalnum())
