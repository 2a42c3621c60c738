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
from PIL import Image

from tumor_ai import NOT_A_DIAGNOSIS
from tumor_ai.core import wording
from tumor_ai.core.batch import check_limit, iter_decoded, result_rows, run_batch, summary
from tumor_ai.core.conformal import SERVED_LEVEL
from tumor_ai.core.erase import fill_region
from tumor_ai.core.explain import DEFAULT_OPACITY, coloured, display_copy, drawn_strength, heatmap, overlay
from tumor_ai.core.imaging import ImageError, LoadedImage, read_image
from tumor_ai.core.inference import Prediction, Predictor
from tumor_ai.core.mri_check import MESSAGE as NOT_MRI_MESSAGE
from tumor_ai.model.labels import display_name

WEB_BATCH_SIZE = 8  # images decoded and run at once by the Batch tab and the batch tool: bounds the server's memory
NO_SLICE = "Give a brain MRI slice first (JPG, PNG, BMP, TIFF, WebP or DICOM)."
TOP_CLASS = "top"  # the evidence for the model's own answer (the page's "show evidence for" default)


class ReaderError(ValueError):
    """A request the reader cannot answer (no slice, unknown model or class), said in one sentence for a person."""


@dataclass
class Drawn:
    """One class's map as every face shows it: over the slice, as a heatmap, and in words."""

    label: str  # the class whose evidence it shows
    cam: np.ndarray  # the map as computed, 0..1 over the whole slice
    overlay: np.ndarray  # over the slice at display size; another class's map as faint as the model finds it likely
    heatmap: np.ndarray
    reading: str  # wording.reading (after wording.class_probability when a person named the class)
    strength: float = 1.0  # how far up the colour bar the drawn map reaches: its peak as drawn (``drawn_strength``)
    legend: str = ""  # the colour bar's words for it (wording.map_strength)


@dataclass
class Answer:
    """Everything one model says of one slice: the prediction (class, calibrated probabilities, MRI check, plausible
    set, the map of its answer), the words beside it, the pictures and the API's JSON.

    The page keeps it in session state: the slider and another class redraw from it (``Reader.draw``), and only a
    class not drawn before costs a model call.
    """

    model: str
    prediction: Prediction
    seconds: float
    checked: bool  # the model has its not-an-MRI check
    caveat: str  # how far this model's map can be trusted (wording.map_trust)
    plausible: str  # the conformal set's sentence, "" without one
    text: str  # what a person reads: the drawn map's reading, or the MRI check's refusal (wording.not_mri)
    notes: list[str]  # how the file was read (imaging's notes), for the JSON
    display: np.ndarray  # the slice at display size: what the pictures are drawn on
    pixels: np.ndarray  # the slice as the model reads it, for another class's map
    cams: dict[int, np.ndarray] = field(default_factory=dict)  # class index -> map, those computed so far
    drawn: Drawn | None = None  # the map this call drew; none for a refused slice
    colours: dict[int, Image.Image] = field(default_factory=dict)  # class index -> its map coloured at display size

    @property
    def is_mri(self) -> bool:
        return self.prediction.is_mri

    @property
    def confidences(self) -> dict[str, float] | None:
        """What a label shows: display name -> probability; nothing for a refused slice."""
        if not self.is_mri:
            return None
        return {display_name(label): p for label, p in self.prediction.probabilities.items()}

    @property
    def details(self) -> dict:
        """The JSON an API user gets: the class, or ``null`` and ``is_brain_mri: false``.

        Without the model's not-an-MRI check (``checked``) ``is_brain_mri`` is ``null`` (nobody looked) and
        ``mri_check`` says ``"off"``.
        """
        prediction, ok, checked = self.prediction, self.is_mri, self.checked
        return {
            "model": self.model,
            "is_brain_mri": ok if checked else None,
            "mri_check": "on" if checked else "off: this model was served without its not-an-MRI check",
            "label": prediction.label if ok else None,
            "display_name": display_name(prediction.label) if ok else None,
            "confidence": round(prediction.confidence, 4) if ok else None,
            "probabilities": {k: round(v, 4) for k, v in prediction.probabilities.items()} if ok else None,
            "prediction_set": {"level": SERVED_LEVEL, "labels": prediction.plausible} if ok and prediction.plausible else None,
            "mri_score": prediction.mri_score,
            "message": None if ok else NOT_MRI_MESSAGE,
            "seconds": round(self.seconds, 4),
            "notes": self.notes,
        }


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

    def classify(
        self,
        image: LoadedImage | np.ndarray,
        model: str,
        evidence: str = TOP_CLASS,
        opacity: float = DEFAULT_OPACITY,
        reminder: str = NOT_A_DIAGNOSIS,
        *,
        asked: bool = False,
        display: np.ndarray | None = None,
        earlier: Answer | None = None,
        what: str = "predict",
    ) -> Answer:
        """Everything one model says of one slice, in one call, as a pipeline that runs one way: the forward pass
        (class, calibrated probabilities, MRI check, plausible set, the map of its answer), the map of ``evidence`` (a
        label, or the answer's own class), the pictures (over the slice at display size, ``display`` if given, and as a
        heatmap), the words ending with ``reminder``, the API's JSON.

        ``earlier``: this model's answer for the same slice, whose forward pass and maps are reused (a class whose map
        was not computed yet is the only model call). ``asked``: a person named the class; the words start with its
        probability.
        """
        predictor = self.model(model)
        pixels = _pixels(image)
        if earlier is None:  # the forward pass
            self.on_call(model, what)
            prediction, seconds = predictor.predict_one(pixels)
            cams = {predictor.labels.index(prediction.label): prediction.cam} if prediction.is_mri else {}
        else:
            prediction, seconds, cams = earlier.prediction, earlier.seconds, earlier.cams
        ok = prediction.is_mri  # a refused slice gets no map, only the refusal
        label = prediction.label if not evidence or evidence == TOP_CLASS else evidence
        if ok and label not in predictor.labels:
            raise ReaderError(f"Unknown class '{evidence}'; choose '{TOP_CLASS}' or one of {predictor.labels}.")
        index = predictor.labels.index(label) if ok else None
        if ok and index not in cams:
            self.on_call(model, f"Grad-CAM of class {index}")
            cams[index] = predictor.explain(pixels, index)
        if display is None:
            display = earlier.display if earlier is not None else display_copy(pixels)
        colours = earlier.colours if earlier is not None and earlier.display is display else {}  # kept, as the maps
        if ok:  # the pictures: another class's map as faint as the model finds it likely, coloured once per answer
            cam = cams[index]
            chance = prediction.probabilities[label]
            shown = drawn_strength(cam, chance, label == prediction.label)
            if index not in colours:
                colours[index] = coloured(shown, display.shape[:2])
            picture = overlay(display, shown, opacity, colours[index])
            pixels_of_map = heatmap(shown, display.shape[:2], colours[index])
            strength = float(shown.max()) if shown.size else 0.0
            legend = wording.map_strength(label, chance, label == prediction.label, strength)
        caveat = wording.map_trust(predictor.metadata)  # the words
        plausible = wording.plausible_sentence(prediction)
        text = wording.not_mri(reminder)
        if ok:
            who = f"Its answer is {display_name(prediction.label)}; the {model} model" if asked else f"The {model} model"
            text = wording.reading(prediction.label, prediction.confidence, cam, who, label, caveat, plausible, reminder, chance)
            if asked:
                text = wording.class_probability(model, label, chance) + text
        checked = predictor.mri_check is not None
        return Answer(
            model=model,
            prediction=prediction,
            seconds=seconds,
            checked=checked,
            caveat=caveat,
            plausible=plausible,
            text=text,
            notes=earlier.notes if earlier is not None else image.notes if isinstance(image, LoadedImage) else [],
            display=display,
            pixels=pixels,
            cams=cams,
            drawn=Drawn(label, cam, picture, pixels_of_map, text, strength, legend) if ok else None,
            colours=colours,
        )

    def draw(self, answer: Answer, evidence: str = TOP_CLASS, opacity: float = DEFAULT_OPACITY) -> Drawn:
        """The map of another class, or at another opacity, for an answer on screen (``classify`` with ``earlier``):
        the answer keeps the maps computed (only a class not drawn before costs a model call)."""
        return self.classify(answer.pixels, answer.model, evidence, opacity, earlier=answer).drawn

    def compare(self, image: LoadedImage, opacity: float = DEFAULT_OPACITY, reminder: str = NOT_A_DIAGNOSIS) -> Comparison:
        """Every model's answer for one slice (each drawn over the same display copy), and the verdict on them."""
        display = display_copy(image.pixels)
        answers = {
            name: self.classify(image, name, TOP_CLASS, opacity, reminder, display=display, what="compare")
            for name in self.predictors
        }
        return Comparison(answers, wording.verdict({name: answer.prediction for name, answer in answers.items()}))

    def explain_class(
        self, image: LoadedImage, label: str, model: str, opacity: float = DEFAULT_OPACITY, reminder: str = NOT_A_DIAGNOSIS
    ) -> Answer:
        """Where one model found evidence for a class a person names (any spelling ``label`` accepts); its reading
        starts with that class's probability. A refused slice has no map (``drawn`` is None)."""
        return self.classify(image, model, self.label(label), opacity, reminder, asked=True)

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


__all__ = ["Answer", "BatchSummary", "Comparison", "Drawn", "Hidden", "ImageError", "Reader", "ReaderError"]
