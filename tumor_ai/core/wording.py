"""Every sentence tumor-ai shows a person about a reading, in one place: the page, the API, the Assistant and the
MCP tools say the same thing in the same words.

How sure a model is (``confidence_words``, cut-offs ``UNSURE`` and ``SURE``), where its map points
(``focus_region``), a reading of one answer (``reading``), the plausible set (``plausible_sentence``), what
several models' answers add up to (``verdict``), how far a model's map can be trusted (``map_trust``), and
names joined as a sentence joins them (``listed``). Nothing here draws or runs a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tumor_ai import NOT_A_DIAGNOSIS
from tumor_ai.core.cam import method_name
from tumor_ai.core.conformal import SERVED_LEVEL
from tumor_ai.core.conformal import describe as describe_set
from tumor_ai.core.mri_check import MESSAGE as NOT_MRI_MESSAGE
from tumor_ai.model.labels import describe, display_name

if TYPE_CHECKING:
    from tumor_ai.core.inference import Prediction
    from tumor_ai.model.metadata import ModelMetadata

UNSURE, SURE = 0.7, 0.9  # confidence below which a model is unsure, and from which it is sure
NOT_MRI = "not a brain MRI"  # a refused slice in a table cell
HIDE_LESSON = (
    "A model that keeps its answer with the lesion hidden is not reading the lesion: it is reading something else in "
    "the slice. The region was filled smoothly from its surroundings, the same fill the published tumour-erased test uses."
)
NUMBER_WORDS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def focus_region(cam: np.ndarray) -> str:
    """Where the strongest evidence lies, in words ("upper left of the image", "centre")."""
    if cam.size == 0 or float(cam.max()) <= 0.0:
        return "nowhere in particular (the map is flat)"
    weights = np.where(cam >= 0.6 * cam.max(), cam, 0.0)
    rows, cols = np.indices(cam.shape)
    row = float((rows * weights).sum() / weights.sum()) / max(cam.shape[0] - 1, 1)
    col = float((cols * weights).sum() / weights.sum()) / max(cam.shape[1] - 1, 1)
    vertical = "upper" if row < 0.4 else "lower" if row > 0.6 else ""
    horizontal = "left" if col < 0.4 else "right" if col > 0.6 else ""
    if not vertical and not horizontal:
        place = "centre"
    else:
        place = " ".join(word for word in (vertical, horizontal) if word)
        if vertical and not horizontal:
            place += " middle"
    spread = float((cam >= 0.5 * cam.max()).mean())
    extent = "a small, focused area" if spread < 0.12 else "a broad area" if spread > 0.35 else "an area"
    return f"{extent} in the {place} of the image"


def listed(names: list[str]) -> str:
    """Names as a sentence lists them: "a", "a and b", "a, b and c"."""
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def confidence_words(confidence: float) -> str:
    if confidence >= SURE:
        return "high"
    if confidence >= UNSURE:
        return "moderate"
    return "low"


def reading(
    label: str,
    confidence: float,
    cam: np.ndarray,
    model_name: str = "The model",
    evidence: str | None = None,
    caveat: str = "",
    plausible: str = "",
    reminder: str = NOT_A_DIAGNOSIS,
) -> str:
    """A short plain-language reading of one prediction, ending with the not-a-diagnosis ``reminder``.

    The page shows the full disclaimer once in its header, so a reading ends with the short one;
    an agent's tool result has no header around it and passes the full ``DISCLAIMER``.

    ``evidence`` is the class the map shows when it is not the model's answer; ``caveat`` says how far
    the map can be trusted (``map_trust``); ``plausible`` is the conformal set's sentence.
    """
    text = (
        f"{model_name} reads this slice as **{display_name(label)}** ({describe(label)}), "
        f"with {confidence_words(confidence)} confidence ({confidence:.0%}). "
    )
    flat = cam.size == 0 or float(cam.max()) <= 0.0
    if (evidence is None or evidence == label) and flat:
        text += "The map is empty: the model's layer holds no positive evidence for its answer anywhere in this slice. "
    elif evidence is None or evidence == label:
        text += f"The evidence for that class came mostly from {focus_region(cam)} (red on the overlay). "
    elif flat:
        text += f"The model found no evidence for **{display_name(evidence)}** anywhere in this slice (the map is empty). "
    else:
        text += (
            f"The overlay shows the evidence for **{display_name(evidence)}** instead, which is not the model's "
            f"answer: it lay mostly in {focus_region(cam)}. "
        )
    if confidence < UNSURE:
        text += "The classes are close: treat this reading as uncertain. "
    if plausible:
        text += f"**{plausible}** "
    return text + caveat + reminder


def plausible_sentence(prediction: Prediction) -> str:
    """The set as a sentence ("Plausible at 95%: meningioma or pituitary."); nothing without a fitted set."""
    if not prediction.plausible:
        return ""
    return describe_set(prediction.plausible, SERVED_LEVEL, len(prediction.probabilities), display_name)


def verdict(predictions: dict[str, Prediction]) -> str:
    """What matters when the models read one slice: whether each could, whether they agree, whether each is sure.

    Two models keep the wording people know ("Both models read ..."); three or more say how the answers split.
    """
    refused = [name for name, p in predictions.items() if not p.is_mri]
    if refused:
        return f"**{NOT_MRI_MESSAGE}** (the MRI check of {listed(refused)})"
    if len(predictions) == 1:
        name, prediction = next(iter(predictions.items()))
        return (
            f"**{name} reads {display_name(prediction.label)}** ({prediction.confidence:.0%}). It is the only model "
            "served, so there is no second reading to compare it with."
        )
    if len({p.label for p in predictions.values()}) > 1:
        return _disagreement(predictions)
    return _agreement(predictions)


def surest(predictions: dict[str, Prediction]) -> str:
    """Which model is surest of its answer ("cnn is the surer (97%)."), for someone who asked; nothing when any was refused."""
    if len(predictions) < 2 or not all(p.is_mri for p in predictions.values()):
        return ""
    name = max(predictions, key=lambda model: predictions[model].confidence)
    return f"{name} is the {'surer' if len(predictions) == 2 else 'surest'} ({predictions[name].confidence:.0%})."


def _agreement(predictions: dict[str, Prediction]) -> str:
    """The models agree: say so, and whether any of them is unsure."""
    label = display_name(next(iter(predictions.values())).label)
    everyone = "Both" if len(predictions) == 2 else f"All {NUMBER_WORDS.get(len(predictions), len(predictions))}"
    unsure = [name for name, p in predictions.items() if p.confidence < UNSURE]
    sure = [name for name, p in predictions.items() if p.confidence >= SURE]
    shares = ", ".join(f"{name} {p.confidence:.0%}" for name, p in predictions.items())
    if unsure and sure:
        return f"**{everyone} read {label}, but {listed(unsure)} {'is' if len(unsure) == 1 else 'are'} unsure** ({shares})."
    if unsure:
        return f"**{everyone} read {label}, with low confidence** ({shares}): treat this reading as uncertain."
    if len(predictions) == 2:
        return f"**Both models read {label}** ({shares})."
    return f"**{everyone} agree: {label}** ({shares})."


def _disagreement(predictions: dict[str, Prediction]) -> str:
    """The models disagree: with three or more, how the answers split ("2 of 3 say ...; ... says ...")."""
    advice = "Treat this slice as uncertain, and look at where each model found its evidence."
    groups: dict[str, list[str]] = {}
    for name, prediction in predictions.items():
        groups.setdefault(prediction.label, []).append(name)
    if len(predictions) == 2 or len(groups) == len(predictions):  # no two models agree: list every answer
        said = ", ".join(f"{name} {display_name(p.label)} ({p.confidence:.0%})" for name, p in predictions.items())
        return f"**The models disagree**: {said}. {advice}"
    parts = []
    for label, names in sorted(groups.items(), key=lambda group: -len(group[1])):  # the largest share first
        if len(names) == 1:
            parts.append(f"{names[0]} says {display_name(label)} ({predictions[names[0]].confidence:.0%})")
        else:
            shares = ", ".join(f"{name} {predictions[name].confidence:.0%}" for name in names)
            parts.append(f"{len(names)} of {len(predictions)} say {display_name(label)} ({shares})")
    return f"**The models disagree**: {'; '.join(parts)}. {advice}"


def map_trust(metadata: ModelMetadata) -> str:
    """One sentence for every reading: which map this is, and how often such maps point at the tumour."""
    method = method_name(metadata.cam_method)
    found = metadata.localisation
    if not found:
        return f"The map is {method} at `{metadata.cam_layer}`; where it points has not been measured against tumour outlines. "
    return (
        f"The map is {method} at `{metadata.cam_layer}`: on held-out tumour slices its peak lay on the tumour in "
        f"{found['pointing_game']['value']:.0%} of them, and with the tumour erased this model still named the tumour class "
        f"in {found['erased']['tumour_kept']['value']:.0%} (About tab). "
    )


def shown_label(prediction: Prediction) -> str:
    """What a person sees for a prediction: the class, or the MRI check's refusal."""
    return display_name(prediction.label) if prediction.is_mri else NOT_MRI


def _shown(prediction: Prediction) -> str:
    return f"{shown_label(prediction)} {prediction.confidence:.0%}" if prediction.is_mri else shown_label(prediction)


def hidden_reading(answers: dict[str, tuple[Prediction, Prediction]], share: float) -> str:
    """Each model's answer before and after the region was hidden, and the change in every class's probability."""
    lines = [f"You hid {share:.1%} of the slice. "]
    for name, (before, after) in answers.items():
        if not after.is_mri:
            lines.append(f"**{name}**: the MRI check refuses the slice with the region hidden ({_shown(before)} before). ")
        elif before.is_mri and before.label == after.label:
            lines.append(f"**{name} keeps its answer**: {_shown(before)} → {_shown(after)}. ")
        else:
            lines.append(f"**{name} changes its answer**: {_shown(before)} → {_shown(after)}. ")
    # One column per model ("99.5% → 1.8% (-97.7%)"), so the table stays readable in a phone-sized window.
    header = "| class | " + " | ".join(f"{name}: before → after (change)" for name in answers) + " |"
    rule = "|---|" + "---:|" * len(answers)
    rows = []
    labels = next(iter(answers.values()))[0].probabilities
    for label in labels:
        cells = []
        for before, after in answers.values():
            old, new = before.probabilities[label], after.probabilities[label]
            change = f"{new - old:+.1%}"
            cells.append(f"{old:.1%} → {new:.1%} ({'0.0%' if change in ('+0.0%', '-0.0%') else change})")
        rows.append(f"| {display_name(label)} | " + " | ".join(cells) + " |")
    return "".join(lines) + "\n\n" + "\n".join([header, rule, *rows]) + f"\n\n_{HIDE_LESSON}_"


def not_mri(reminder: str = NOT_A_DIAGNOSIS) -> str:
    """What every face says of a slice the MRI check refused."""
    return f"**{NOT_MRI_MESSAGE}** {reminder}"


def class_probability(model: str, label: str, probability: float) -> str:
    """How likely one model finds a class a person asked about."""
    return f"The {model} model gives **{display_name(label)}** a probability of {probability:.1%}. "


def message_too_long(length: int, limit: int) -> str:
    """The Assistant's answer to a message longer than it reads."""
    return (
        f"That message is {length:,} characters long; the Assistant reads questions of at most {limit:,} characters. "
        "Ask a shorter question."
    )


def not_a_number(what: str, value: object, low: float, high: float) -> str:
    """A request whose ``what`` is not a number from ``low`` to ``high`` (an API client sent text, a list, nothing)."""
    return f"The {what} must be a number from {low:g} to {high:g}; this request sent {_sent(value)}."


def _sent(value: object) -> str:
    """What a request sent, in a few words and without quotes (the sentence reaches an HTML pop-up, escaped)."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the text {value[:30]}" + "…" * (len(value) > 30)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return f"a {type(value).__name__}"


def not_a_choice(what: str, value: object) -> str:
    """A request whose ``what`` (a model, a class) is not text at all."""
    return f"The {what} must be given as text, the name of one; this request sent a {type(value).__name__}."


def tools_busy(waiting: int) -> str:
    """A tool call refused because as many calls wait as the page's queue holds (``--queue-size``)."""
    return f"The app is busy: {waiting} requests are already waiting, as many as it queues. Try again in a minute."


SUMMARY_STOPPED = "The summary stopped between two files: its caller had gone."
