"""The app's actions as plain functions: the Assistant tab, ``gradio_client`` and MCP agents call these.

Each tool reads a slice the way the tabs do (``tumor_ai.core.imaging``), answers from the models and
their metadata (no figure is made up: every number is a model output or a value from
``tumor_ai.json``), and ends with the research-not-diagnosis line. A ``Toolbox`` holds the loaded
predictors, the only state the tools need; ``tumor_ai.app.ui`` publishes its methods as the app's
tool endpoints (and so as MCP tools), and ``tumor_ai.app.assistant`` calls them from the chat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from tumor_ai import DISCLAIMER
from tumor_ai.app.reader import Answer, Reader, ReaderError
from tumor_ai.core.imaging import ImageError, LoadedImage
from tumor_ai.core.inference import Prediction, Predictor
from tumor_ai.core.wording import HELD_OUT_ONLY, figures_lead, focus_region, map_trust, surest, verdict
from tumor_ai.model.labels import display_name

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
    facts: dict = field(default_factory=dict)  # what the answer rests on, for the Assistant's first sentence


class Toolbox:
    """The tools over a set of loaded predictors (name -> Predictor), in the order the app lists them."""

    def __init__(self, predictors: dict[str, Predictor]):
        self.predictors = predictors
        self.reader = Reader(predictors)

    @property
    def names(self) -> list[str]:
        return self.reader.names

    @property
    def labels(self) -> list[str]:
        return self.reader.labels

    def model(self, name: str) -> Predictor:
        with _as_tool_error():
            return self.reader.model(name)

    def label(self, name: str) -> str:
        """A class from its label or display name, any case ("Meningioma", "no tumour", "notumor")."""
        with _as_tool_error():
            return self.reader.label(name)

    def classify_slice(self, image: LoadedImage, model: str) -> ToolResult:
        """One model's class, calibrated confidence, plausible set and Grad-CAM overlay for one slice."""
        self.model(model)
        answer = self.reader.classify(image, model, opacity=TOOL_OPACITY, reminder=DISCLAIMER)  # no page header here
        return _drawn(answer, _caption(model, answer.prediction))

    def compare_models(self, image: LoadedImage) -> ToolResult:
        """Every model's answer for one slice, and what they add up to, with each overlay."""
        comparison = self.reader.compare(image, TOOL_OPACITY, DISCLAIMER)
        lines, pictures, captions = [], [], []
        for name, answer in comparison.answers.items():
            lines.append(f"- **{name}**: {_answer(answer)}")
            if answer.drawn is not None:
                pictures.append(answer.drawn.overlay)
                captions.append(_caption(name, answer.prediction))
        text = f"{agreement(comparison.predictions)}\n\n" + "\n".join(lines) + f"\n\n{DISCLAIMER}"
        return ToolResult(text, pictures, captions, {"predictions": comparison.predictions})

    def explain_class(self, image: LoadedImage, label: str, model: str) -> ToolResult:
        """Where one model found evidence for a class a person names, and that class's probability."""
        self.model(model)
        with _as_tool_error():
            answer = self.reader.explain_class(image, label, model, TOOL_OPACITY, DISCLAIMER)
        drawn = answer.drawn
        chance = answer.prediction.probabilities[drawn.label] if drawn else 0.0
        return _drawn(answer, f"{model}: evidence for {display_name(drawn.label)} ({chance:.0%})" if drawn else "")

    def model_figures(self, model: str, label: str = "") -> ToolResult:
        """A model's validation figures (accuracy, macro-F1, per class), where its map points, and its prediction sets."""
        metadata = self.model(model).metadata
        if not metadata.metrics:
            return ToolResult(figures_lead(model, metadata))
        validation, per_class = metadata.metrics.validation, metadata.metrics.validation_per_class
        chosen = [self.label(label)] if label else list(per_class)
        lines = [
            f"**{metadata.title or model}** on its {validation.images} held-out validation images (a split that keeps "
            f"copies of one image on one side): accuracy {validation.accuracy:.1%}, macro-F1 {validation.macro_f1:.1%}."
        ]
        pointing = (metadata.localisation.pointing_game.per_class if metadata.localisation else None) or {}
        for name in chosen:
            figures = per_class.get(name)
            if figures:
                line = (
                    f"- {display_name(name)}: recall {figures.recall:.1%} (of {figures.support} slices), "
                    f"precision {figures.precision:.1%}, F1 {figures.f1:.1%}"
                )
                if name in pointing:
                    line += f"; its map's peak lay on the tumour in {pointing[name].value:.0%} of outlined slices"
                lines.append(line + ".")
        conformal = metadata.conformal
        sets = (conformal.cross_fit or {}).get(str(conformal.served_level)) if conformal else None
        if conformal and sets:
            lines.append(
                f"Its {float(conformal.served_level or 0):.0%} prediction sets held the true class for "
                f"{sets.coverage:.1%} of validation slices, with {sets.set_size:.2f} classes on average."
            )
        lines.append(f"{HELD_OUT_ONLY} {DISCLAIMER}")
        return ToolResult("\n".join(lines))

    def summarise_batch(self, paths: list[str], stop: Callable[[], bool] | None = None) -> ToolResult:
        """Every model's class counts over many slices (or a .zip), and on how many the models disagree; ``stop()`` is
        asked between files whether to go on."""
        with _as_tool_error():
            summary = self.reader.summarise(paths, stop=stop).text
        return ToolResult(summary + f". {DISCLAIMER}", facts={"summary": summary})

    def explain_grad_cam(self) -> ToolResult:
        """What Grad-CAM is, in plain words, and how far each served model's map can be trusted."""
        maps = [f"- **{name}**: {map_trust(predictor.metadata).strip()}" for name, predictor in self.predictors.items()]
        return ToolResult(GRAD_CAM_TEXT + "\n\n" + "\n".join(maps))


def read_slice(path: str | None) -> LoadedImage:
    """The slice at ``path`` as every tool reads it; one sentence when there is none or it cannot be read."""
    with _as_tool_error():
        return Reader({}).read(path)


@contextmanager
def _as_tool_error() -> Iterator[None]:
    """The reader's and the image reader's sentences as a ``ToolError``."""
    try:
        yield
    except (ReaderError, ImageError) as error:
        raise ToolError(str(error)) from None


def agreement(predictions: dict[str, Prediction]) -> str:
    """What an agent is told of a comparison: the page's verdict, and which model is surest."""
    return " ".join(filter(None, [verdict(predictions), surest(predictions)]))


def _drawn(answer: Answer, caption: str) -> ToolResult:
    """One model's answer as a tool gives it: the reading and the overlay, or the MRI check's refusal alone."""
    facts = {"predictions": {answer.model: answer.prediction}}
    if answer.drawn is None:
        return ToolResult(answer.text, facts=facts)
    facts |= {"model": answer.model, "label": answer.drawn.label, "region": focus_region(answer.drawn.cam)}
    return ToolResult(answer.text, [answer.drawn.overlay], [caption], facts)


def _answer(answer: Answer) -> str:
    if not answer.is_mri:
        return "refused by its MRI check (no class given)"
    prediction, plausible = answer.prediction, answer.plausible
    return f"{display_name(prediction.label)}, {prediction.confidence:.1%}" + (f" ({plausible})" if plausible else "")


def _caption(model: str, prediction: Prediction) -> str:
    return f"{model}: {display_name(prediction.label)} ({prediction.confidence:.0%})"
