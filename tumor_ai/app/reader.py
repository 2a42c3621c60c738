"""The one reader behind the page and the agents: read a slice, classify, compare, explain a class, hide a region,
summarise a batch.

``tumor_ai.app.handlers`` (the page and its API) and ``tumor_ai.app.tools`` (the Assistant and the MCP tools)
both call a ``Reader`` and get typed results back; the sentences in them come from ``tumor_ai.core.wording``, so
the page and an agent say the same thing in the same words. Neither face runs a model or words an answer itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tumor_ai import NOT_A_DIAGNOSIS
from tumor_ai.core import wording
from tumor_ai.core.batch import check_limit, iter_decoded, result_rows, run_batch, summary
from tumor_ai.core.erase import fill_region
from tumor_ai.core.imaging import ImageError, LoadedImage, read_image
from tumor_ai.core.inference import Prediction, Predictor
from tumor_ai.model.labels import display_name

WEB_BATCH_SIZE = 8  # images decoded and run at once by the Batch tab and the batch tool: bounds the server's memory
NO_SLICE = "Give a brain MRI slice first (JPG, PNG, BMP, TIFF, WebP or DICOM)."


class ReaderError(ValueError):
    """A request the reader cannot answer (no slice, unknown model or class), said in one sentence for a person."""


@dataclass
class Answer:
    """One model's answer for one slice, and what every reading of it says beside the class."""

    model: str
    prediction: Prediction
    seconds: float
    checked: bool  # the model has its not-an-MRI check
    caveat: str  # how far this model's map can be trusted (wording.map_trust)
    plausible: str  # the conformal set's sentence, "" without one

    @property
    def is_mri(self) -> bool:
        return self.prediction.is_mri


@dataclass
class Comparison:
    """Every model's answer for one slice, and what they add up to (wording.verdict)."""

    answers: dict[str, Answer]
    verdict: str

    @property
    def predictions(self) -> dict[str, Prediction]:
        return {name: answer.prediction for name, answer in self.answers.items()}


@dataclass
class Hidden:
    """A slice with a region filled from its surroundings, and every model's answer before and after."""

    pixels: np.ndarray
    share: float  # of the slice hidden
    answers: dict[str, tuple[Prediction, Prediction]]
    text: str  # wording.hidden_reading


@dataclass
class BatchSummary:
    rows: list[dict] = field(default_factory=list)
    text: str = ""


class Reader:
    """The reading of slices over a set of loaded predictors (name -> Predictor), in the order the app lists them.

    ``on_call(model, what)`` hears of each model call before it runs (the page logs them).
    """

    def __init__(self, predictors: dict[str, Predictor], on_call: Callable[[str, str], None] | None = None):
        self.predictors = predictors
        self.on_call = on_call or (lambda model, what: None)

    @property
    def names(self) -> list[str]:
        return list(self.predictors)

    @property
    def labels(self) -> list[str]:
        return next(iter(self.predictors.values())).labels

    def model(self, name: str) -> Predictor:
        if not isinstance(name, str):
            raise ReaderError(wording.not_a_choice("model", name))
        if name not in self.predictors:
            raise ReaderError(f"Unknown model '{name}'; choose one of: {', '.join(self.predictors)}.")
        return self.predictors[name]

    def label(self, name: str) -> str:
        """A class from its label or display name, any case ("Meningioma", "no tumour", "notumor")."""
        if not isinstance(name, str):
            raise ReaderError(wording.not_a_choice("class", name))
        wanted = _plain(name)
        for label in self.labels:
            if wanted in (_plain(label), _plain(display_name(label))):
                return label
        choices = ", ".join(display_name(label) for label in self.labels)
        raise ReaderError(f"Unknown class '{name}'; choose one of: {choices}.")

    def read(self, path: str | None) -> LoadedImage:
        """The slice at ``path``; one sentence when there is none (``ReaderError``) or it cannot be read (``ImageError``)."""
        if not path:
            raise ReaderError(NO_SLICE)
        return read_image(path)

    def classify(self, image: LoadedImage | np.ndarray, model: str, what: str = "predict") -> Answer:
        """One model's class, calibrated confidence, plausible set and the map of its answer."""
        predictor = self.model(model)
        self.on_call(model, what)
        prediction, seconds = predictor.predict_one(_pixels(image))
        return Answer(
            model=model,
            prediction=prediction,
            seconds=seconds,
            checked=predictor.mri_check is not None,
            caveat=wording.map_trust(predictor.metadata),
            plausible=wording.plausible_sentence(prediction),
        )

    def compare(self, image: LoadedImage) -> Comparison:
        """Every model's answer for one slice, and the verdict on them."""
        answers = {name: self.classify(image, name, "compare") for name in self.predictors}
        return Comparison(answers, wording.verdict({name: answer.prediction for name, answer in answers.items()}))

    def evidence(self, model: str, image: LoadedImage | np.ndarray, index: int) -> np.ndarray:
        """The map of the evidence for class ``index`` (one model call)."""
        self.on_call(model, f"Grad-CAM of class {index}")
        return self.model(model).explain(_pixels(image), index)

    def reading(
        self,
        answer: Answer,
        cam: np.ndarray,
        evidence: str | None = None,
        who: str | None = None,
        reminder: str = NOT_A_DIAGNOSIS,
    ) -> str:
        """The answer in words, with the map of ``evidence`` (the answer's own class by default)."""
        prediction = answer.prediction
        who = who or f"The {answer.model} model"
        chance = prediction.probabilities.get(evidence) if evidence else None
        return wording.reading(
            prediction.label, prediction.confidence, cam, who, evidence, answer.caveat, answer.plausible, reminder, chance
        )

    def explain_class(self, image: LoadedImage, label: str, model: str, reminder: str = NOT_A_DIAGNOSIS):
        """Where one model found evidence for a class a person names: ``(answer, class, map, words)``; no map when refused."""
        chosen = self.label(label)
        answer = self.classify(image, model)
        if not answer.is_mri:
            return answer, chosen, None, ""
        prediction = answer.prediction
        cam = self.evidence(model, image, self.model(model).labels.index(chosen))
        who = f"Its answer is {display_name(prediction.label)}; the {model} model"
        text = wording.class_probability(model, chosen, prediction.probabilities[chosen]) + self.reading(
            answer, cam, chosen, who, reminder
        )
        return answer, chosen, cam, text

    def hide(self, pixels: np.ndarray, region: np.ndarray) -> Hidden:
        """Fill ``region`` from its surroundings and ask every model again: one forward pass per model, both slices."""
        hidden = fill_region(pixels, region)
        answers = {}
        for name, predictor in self.predictors.items():
            self.on_call(name, "hide a region")
            before, after = predictor.predict([pixels, hidden], batch_size=2)
            answers[name] = (before, after)
        share = float(region.mean())
        return Hidden(hidden, share, answers, wording.hidden_reading(answers, share))

    def summarise(
        self, paths: list[str], batch_size: int = WEB_BATCH_SIZE, stop: Callable[[], bool] | None = None
    ) -> BatchSummary:
        """Every model's class counts over many slices (or a .zip), and on how many the models disagree.

        Within the Batch tab's memory budget: one file's raw bytes at a time, ``batch_size`` decoded slices at once,
        and only the rows kept. ``stop()`` is asked after each file whether to go on (its caller may have gone).
        """
        if not paths:
            raise ReaderError("Give some slices or a .zip of slices first.")
        check_limit(paths)

        def go_on(item) -> None:
            if stop is not None and stop():
                raise ReaderError(wording.SUMMARY_STOPPED)

        rows = []
        for items in iter_decoded(paths, batch_size, read=go_on):
            rows += result_rows(items, run_batch(self.predictors, items, batch_size))
        return BatchSummary(rows, summary(rows, self.names))


def _pixels(image: LoadedImage | np.ndarray) -> np.ndarray:
    return image.pixels if isinstance(image, LoadedImage) else image


def _plain(text: str) -> str:
    return "".join(character for character in text.lower() if character.isalnum())


__all__ = ["Answer", "BatchSummary", "Comparison", "Hidden", "ImageError", "Reader", "ReaderError"]
