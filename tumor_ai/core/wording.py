"""Every sentence tumor-ai shows a person about a reading, in one place: the page, the API, the Assistant and the
MCP tools say the same thing in the same words.

How sure a model is (``confidence_words``, cut-offs ``UNSURE`` and ``SURE``), where its map points
(``focus_region``), a reading of one answer (``reading``), the plausible set (``plausible_sentence``), what
several models' answers add up to (``verdict``), how far a model's map can be trusted (``map_trust``), and
names joined as a sentence joins them (``listed``). Nothing here draws or runs a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

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


WEAK_EVIDENCE = 0.10  # below this probability, a class's map is "weak evidence" (and drawn as faint as its probability)


def reading(
    label: str,
    confidence: float,
    cam: np.ndarray,
    model_name: str = "The model",
    evidence: str | None = None,
    caveat: str = "",
    plausible: str = "",
    reminder: str = NOT_A_DIAGNOSIS,
    evidence_probability: float | None = None,
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
    elif evidence_probability is not None and evidence_probability < WEAK_EVIDENCE:
        text += (
            f"The overlay shows the evidence for **{display_name(evidence)}** instead, which is not the model's answer: "
            f"**weak evidence**, since the model gives that class only {evidence_probability:.1%}, so the map is drawn "
            "that faint. "
        )
    else:
        chance = f" (the model gives it {evidence_probability:.0%})" if evidence_probability is not None else ""
        text += (
            f"The overlay shows the evidence for **{display_name(evidence)}**{chance} instead, which is not the model's "
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
    everyone = "Both models" if len(predictions) == 2 else f"All {NUMBER_WORDS.get(len(predictions), len(predictions))}"
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
        f"{found.pointing_game.value:.0%} of them, and with the tumour erased this model still named the tumour class "
        f"in {found.erased.tumour_kept.value:.0%} (About tab). "
    )


def shown_label(prediction: Prediction) -> str:
    """What a person sees for a prediction: the class, or the MRI check's refusal."""
    return display_name(prediction.label) if prediction.is_mri else NOT_MRI


def _shown(prediction: Prediction) -> str:
    return f"{shown_label(prediction)} {prediction.confidence:.0%}" if prediction.is_mri else shown_label(prediction)


# What the "Use via API" page says of each of the page's endpoints, one sentence each.
API_DESCRIPTIONS = {
    "predict": "One model's class for a brain MRI slice, with calibrated confidences, the map of its evidence over the "
    "slice, a reading in words and the JSON details (research and teaching only, not a diagnosis).",
    "compare": "Every served model's class, confidences and evidence overlay for one brain MRI slice, with the verdict "
    "on where they agree and each model's inference time.",
    "batch": "Many slices, or a .zip of them, through every model: a summary, a table, captioned overlays and a CSV of "
    "every class's probability (with accuracy and confusion matrices for a .zip with class folders).",
}

BATCH_RUNNING = re.compile(r"^\*\*(\d+)/(\d+) files so far…\*\* ?")  # the running batch's summary prefix


BATCH_STOPPED = "**Stopped"  # how Stop's status line begins (batch_stopped), which a later answer after Stop reads


def batch_stopped(summary: str) -> tuple[str, str]:
    """What Stop says, and the summary without its "so far…": the files done, and that a new run starts over."""
    running = BATCH_RUNNING.match(summary or "")
    done = f" after {running[1]} of {running[2]} files" if running else ""
    rest = summary[running.end() :] if running else summary
    status = (
        f"{BATCH_STOPPED}{done}.** The table and the CSV hold the files done before Stop. Run batch again starts over from the "
        "first file (the files done are read again)."
    )
    return status, rest


HIDE_REFUSED_CELL = "– (refused by the MRI check)"


def hidden_reading(answers: dict[str, tuple[Prediction, Prediction]], share: float) -> str:
    """Each model's answer before and after the region was hidden, and the change in every class's probability."""
    lines = [f"You hid {share:.1%} of the slice. "]
    for name, (before, after) in answers.items():
        if not before.is_mri and not after.is_mri:
            lines.append(f"**{name}**: the MRI check refuses the slice, with or without the region. ")
        elif not before.is_mri:
            lines.append(f"**{name}**: the MRI check refuses the slice as it is, not with the region hidden ({_shown(after)}). ")
        elif not after.is_mri:
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
            if not (before.is_mri and after.is_mri):  # a refused slice has no class: no probabilities to compare
                cells.append(HIDE_REFUSED_CELL)
                continue
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


# The Assistant's words: what it says it can do, what it needs, what a term means, which model is better.
ADVICE_REFUSAL = (
    "I can't give medical advice or say what a scan means for a person: tumor-ai is a research and teaching "
    "tool, not a diagnosis, so please ask a doctor."
)
CAN_DO = (
    'I can say what each model reads in a slice and how sure it is, where it found its evidence ("why?"), how '
    "accurate each model is and which is better, what a term means (glioma, Grad-CAM, calibration ...), how the "
    "models were trained, and summarise several slices at once."
)
HELP = (
    "I can answer, from the models themselves: what each model reads in a slice and which is surer; where a model "
    'found evidence for a class you name ("show the evidence for meningioma"); how accurate each model is, overall '
    "or for one class; what Grad-CAM shows; and a summary of several slices at once. Drop one or more slices "
    "(JPG, PNG, DICOM or a .zip) into the box to start."
)
NEEDS_SLICE = "Drop a brain MRI slice into the box first (JPG, PNG, BMP, TIFF, WebP or DICOM), then ask again."
HIDE_ANSWER = (
    'Hiding a region needs a brush: open the Predict or Compare tab, run the slice, and use "Hide a region and ask '
    'again" below the answer. Both models answer again with the region filled from its surroundings.'
)
SHORT_DISCLAIMER = f"_{NOT_A_DIAGNOSIS}_"
# Each term in two or three plain sentences, with where the definition comes from.
GLOSSARY: dict[str, tuple[str, str, str]] = {
    "glioma": (
        "Glioma",
        "A glioma is a tumour that starts in the glial cells, the cells that support and protect the nerve cells "
        "of the brain and spinal cord. Gliomas range from slow-growing to fast-growing; astrocytomas, "
        "oligodendrogliomas and glioblastomas are all gliomas.",
        "NCI Dictionary of Cancer Terms; WHO Classification of Tumours of the Central Nervous System (2021)",
    ),
    "meningioma": (
        "Meningioma",
        "A meningioma is a tumour that grows from the meninges, the membranes that wrap the brain and spinal cord. "
        "Because it starts outside the brain tissue, on a scan it usually sits against the skull or the membranes "
        "between the brain's halves, and most grow slowly.",
        "NCI Dictionary of Cancer Terms; WHO Classification of Tumours of the Central Nervous System (2021)",
    ),
    "pituitary": (
        "Pituitary tumour",
        "A pituitary tumour grows in the pituitary gland, the pea-sized gland at the base of the brain, behind "
        "the nose, that makes hormones. On a slice it sits low in the middle of the head; most are adenomas.",
        "NCI Dictionary of Cancer Terms",
    ),
    "notumor": (
        "No tumour",
        '"No tumour" is the dataset\'s class for slices with none of the three tumour kinds the models know. It '
        "does not mean a brain is healthy: the models know only these four classes.",
        "the model card (its dataset section)",
    ),
    "gradcam": (
        "Grad-CAM",
        "Grad-CAM (gradient-weighted class activation mapping) colours the parts of a slice that raised a model's "
        "score for one class: it weighs a convolution layer's feature maps by the gradient of that score and keeps "
        "the positive part. It shows what the model used, not where the tumour is, so tumor-ai measures how often "
        "each map's peak lies on the tumour (the pointing game).",
        'Selvaraju et al., "Grad-CAM", ICCV 2017; the model card',
    ),
    "layercam": (
        "LayerCAM",
        "LayerCAM is a variant of Grad-CAM that weighs every position of a layer's feature maps by its own positive "
        "gradient, instead of one weight per map, so its map keeps finer detail. tumor-ai serves, for each model, "
        "the map that pointed at the tumour best when measured (About tab).",
        'Jiang et al., "LayerCAM", IEEE Transactions on Image Processing 2021; the model card',
    ),
    "calibration": (
        "Calibration",
        "A model is calibrated when its confidence matches how often it is right: of the answers it gives at 80%, "
        "about 80 in 100 are right. tumor-ai calibrates each model with one temperature fitted on the "
        "validation split, and reports the expected calibration error (ECE), the average gap between confidence "
        "and accuracy (lower is better).",
        'Guo et al., "On Calibration of Modern Neural Networks", ICML 2017; the model card',
    ),
    "prediction_set": (
        "Prediction set",
        "A prediction set lists every class a model cannot rule out, instead of its top answer alone. tumor-ai "
        "builds them by conformal prediction so that, on slices like its validation ones, 95 in 100 sets hold the "
        "true class: one class in the set means the model is sure, two or more that it is torn between them.",
        'Angelopoulos and Bates, "A Gentle Introduction to Conformal Prediction", 2021; the model card',
    ),
    "pointing_game": (
        "Pointing game",
        "The pointing game asks whether the hottest point of a model's map falls inside the drawn outline of the "
        "tumour; the score is the share of slices where it does. tumor-ai plays it on held-out slices with tumour "
        "outlines, per model and per class.",
        'Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016; the model card',
    ),
    "recall": (
        "Recall",
        "Recall is the share of the slices of a class that a model named correctly: a recall of 92% for glioma "
        "means it called 92 of every 100 glioma slices glioma. It is also called sensitivity.",
        "Manning, Raghavan and Schütze, Introduction to Information Retrieval (2008)",
    ),
    "precision": (
        "Precision",
        "Precision is the share of a model's answers for a class that were right: a precision of 97% for glioma "
        "means 97 of every 100 slices it called glioma were gliomas. Where recall asks how many of a class were found, "
        "precision asks how far to believe the model when it names that class.",
        "Manning, Raghavan and Schütze, Introduction to Information Retrieval (2008)",
    ),
    "f1": (
        "F1",
        "The F1 score is the harmonic mean of precision and recall, so it is high only when both are. Macro-F1 "
        "averages it over the classes, so every class counts the same however many slices it has.",
        "Manning, Raghavan and Schütze, Introduction to Information Retrieval (2008)",
    ),
}
TUMOUR_KINDS = ("glioma", "meningioma", "pituitary")


def greeting(has_slice: bool) -> str:
    """Hello, and what to ask."""
    if has_slice:
        return 'Hello! I can see your slice: ask "is there a tumour?", then "why?", or "which model is better?".'
    return (
        "Hello! Drop a brain MRI slice into the box and ask what the models read in it, or ask me which model is "
        'better, how they were trained, or what a term means ("what is a glioma?").'
    )


def not_understood(has_slice: bool) -> str:
    """What the Assistant says of a message it cannot place."""
    if has_slice:
        return f"I did not follow that. {CAN_DO}"
    return HELP


def definition(keys: list[str]) -> str:
    """Each term's two or three sentences and its source; two tumour kinds get what tells them apart first."""
    if not keys:
        known = listed([GLOSSARY[key][0] for key in GLOSSARY])
        return f'I can say what these mean: {known}. Ask "what is a meningioma?".'
    lead = ""
    if sum(key in TUMOUR_KINDS for key in keys) >= 2:
        lead = "They are different tumours, told apart by where they start: "
    parts = [f"{GLOSSARY[key][1]} _(Source: {GLOSSARY[key][2]}.)_" for key in keys[:3]]
    return lead + "\n\n".join(parts)


def is_tumour(label: str) -> bool:
    return "".join(c for c in label.lower() if c.isalpha()).replace("tumour", "tumor") not in ("notumor", "none", "normal")


def slice_lead(predictions: dict[str, Prediction], asked_tumour: bool, label: str | None = None) -> str:
    """The first sentence about one slice's readings: whether the models see a tumour, what kind, how sure."""
    if not predictions:
        return ""
    if not all(p.is_mri for p in predictions.values()) or len({p.label for p in predictions.values()}) > 1:
        lead = verdict(predictions)
    elif len(predictions) == 1:
        name, p = next(iter(predictions.items()))
        sure = f"{p.confidence:.0%}, {confidence_words(p.confidence)} confidence"
        lead = f"The {name} model reads this slice as **{display_name(p.label)}** ({sure})."
    elif asked_tumour:
        first = next(iter(predictions.values()))
        shares = ", ".join(f"{name} {p.confidence:.0%}" for name, p in predictions.items())
        seen = "Both models see a tumour" if is_tumour(first.label) else "Neither model sees a tumour"
        lead = f"**{seen}**: both read {display_name(first.label)} ({shares})."
    else:
        lead = verdict(predictions)
    if label and all(p.is_mri for p in predictions.values()):
        shares = listed([f"the {name} {p.probabilities[label]:.0%}" for name, p in predictions.items()])
        lead += f" {display_name(label)} gets {shares}."
    return lead


def evidence_lead(model: str, label: str, prediction: Prediction, region: str) -> str:
    """Why a model answered as it did, or where it saw a class it did not answer, in one sentence."""
    if prediction.label == label:
        return (
            f"The {model} model reads **{display_name(label)}** ({prediction.confidence:.0%}) because of what it found "
            f"in {region} (red on the overlay)."
        )
    return class_probability(model, label, prediction.probabilities[label]) + (
        f"Its evidence for that class lay in {region}; its answer is {display_name(prediction.label)}."
    )


def confidence_lead(predictions: dict[str, Prediction], asked: list[str], known: dict[str, Prediction] | None = None) -> str:
    """How sure a model is, with its runner-up class (and how sure the others were, from ``known``); which is surer
    when no model is named."""
    shown = {name: p for name, p in predictions.items() if p.is_mri}
    if not shown:
        return verdict(predictions)
    if len(asked) != 1 and len(shown) > 1:
        name = max(shown, key=lambda model: shown[model].confidence)
        others = ", ".join(f"{p.confidence:.0%} from the {other}" for other, p in shown.items() if other != name)
        return (
            f"The {name} model is the surer: {display_name(shown[name].label)} at {shown[name].confidence:.0%}, against {others}."
        )
    name = asked[0] if asked else next(iter(shown))
    p = shown.get(name)
    if p is None:
        return verdict(predictions)
    ranked = sorted(p.probabilities.items(), key=lambda item: -item[1])
    runner, share = ranked[1] if len(ranked) > 1 else (ranked[0][0], 0.0)
    text = (
        f"The {name} model gives **{display_name(p.label)}** {p.confidence:.0%} ({confidence_words(p.confidence)} "
        f"confidence), and {share:.0%} to {display_name(runner)}, its runner-up."
    )
    others = {other: q for other, q in (known or {}).items() if other != name and q.is_mri}
    if others:
        text += " The " + listed([f"{other} gives its answer {q.confidence:.0%}" for other, q in others.items()]) + "."
    if p.confidence < SURE or any(q.confidence > p.confidence for q in others.values()):
        text += f" It is less sure because this slice also looks a little like {display_name(runner).lower()} to it."
    return text


def figures_lead(model: str, metadata: ModelMetadata, label: str | None = None) -> str:
    """A model's headline validation figure, or its recall on one class."""
    if not metadata.metrics:
        return f"The {model} model's metadata holds no validation figures."
    validation = metadata.metrics.validation
    scores = metadata.metrics.validation_per_class.get(label) if label else None
    if scores:
        return (
            f"The {model} model's recall on {display_name(label).lower()} is {scores.recall:.1%}: it named "
            f"{scores.recall:.0%} of the {scores.support} {display_name(label).lower()} validation slices correctly "
            f"(precision {scores.precision:.1%}; accuracy over all classes {validation.accuracy:.1%})."
        )
    return (
        f"The {model} model's accuracy is {validation.accuracy:.1%} on {validation.images:,} held-out validation images "
        f"(macro-F1 {validation.macro_f1:.1%})."
    )


HELD_OUT_ONLY = "These are figures on this dataset's own held-out slices, not on patients from a clinic."


def better_model(metadata: dict[str, ModelMetadata]) -> str:
    """Which model is better, by how much, on what data, and where the other wins, from the metadata alone."""
    scored = {name: meta for name, meta in metadata.items() if meta.metrics}
    if len(metadata) < 2:
        return "Only one model is served, so there is nothing to compare it with."
    if len(scored) < 2:
        return "The models' metadata does not hold validation figures for both, so I cannot say which is better."
    ranked = sorted(scored, key=lambda name: -scored[name].metrics.validation.accuracy)
    best, other = ranked[0], ranked[1]
    a, b = scored[best].metrics.validation, scored[other].metrics.validation
    data = (
        f"the same {a.images:,} held-out validation images"
        if a.images == b.images
        else f"{a.images:,} and {b.images:,} held-out images"
    )
    gap = (a.accuracy - b.accuracy) * 100
    ahead = leader(scored, "accuracy")  # the About tab's rule: ahead only beyond the margin those images allow
    if gap < 0.05:
        lead = f"**Neither is better overall**: both models reach {a.accuracy:.1%} accuracy on {data}."
    elif ahead is not None and not ahead[2]:
        lead = (
            f"**Neither is clearly better overall**: accuracy {a.accuracy:.1%} for the {best} against {b.accuracy:.1%} "
            f"for the {other} on {data} (macro-F1 {a.macro_f1:.1%} against {b.macro_f1:.1%}), a gap of {gap:.1f} points, "
            "within the margin those images allow."
        )
    else:
        lead = (
            f"**The {best} model is better overall**, by {gap:.1f} points: accuracy {a.accuracy:.1%} against "
            f"{b.accuracy:.1%} for the {other}, on {data} (macro-F1 {a.macro_f1:.1%} against {b.macro_f1:.1%})."
        )
    wins = []
    mine, theirs = scored[best].metrics.validation_per_class, scored[other].metrics.validation_per_class
    for label, scores in theirs.items():
        if label in mine and scores.recall > mine[label].recall + 0.0005:
            wins.append(f"recall on {display_name(label).lower()} ({scores.recall:.1%} against {mine[label].recall:.1%})")
    ece_best, ece_other = scored[best].calibration.ece_after, scored[other].calibration.ece_after
    if ece_best is not None and ece_other is not None and ece_other < ece_best:
        wins.append(f"calibration (ECE {ece_other:.3f} against {ece_best:.3f})")
    pointing = {name: _pointing(scored[name]) for name in (best, other)}
    if pointing[best] is not None and pointing[other] is not None and pointing[other] > pointing[best]:
        wins.append(
            f"where it looks (its map's peak on the tumour in {pointing[other]:.0%} of outlined slices "
            f"against {pointing[best]:.0%})"
        )
    if wins:
        lead += f" The {other} wins on {listed(wins)}."
    else:
        lead += f" The {other} does not beat it on any class's recall, on calibration or on where its map points."
    return f"{lead} {HELD_OUT_ONLY}"


def _pointing(metadata: ModelMetadata) -> float | None:
    """How often the model's map peaks on the tumour, where measured."""
    return metadata.localisation.pointing_game.value if metadata.localisation else None


def trained(metadata: dict[str, ModelMetadata]) -> str:
    """How the models were trained and on what data, from their metadata."""
    first = next(iter(metadata.values()))
    record = first.dataset
    if record and record.train_images:
        same = all(meta.dataset and meta.dataset.fingerprint_sha256 == record.fingerprint_sha256 for meta in metadata.values())
        who = "Both models" if len(metadata) == 2 and same else "The models" if same else f"The {next(iter(metadata))} model"
        lead = (
            f"{who} learnt from {record.train_images:,} images of the {record.name} ({record.license}) and were scored on the "
            f"other {record.validation_images:,}, a split that keeps every copy of a slice on one side."
        )
    else:
        lead = "The models' metadata does not say what they were trained on."
    lines = []
    for name, meta in metadata.items():
        run = meta.training
        epochs = sum((run.epochs_run or {}).values())
        detail = f"- **{name}** ({meta.title or name}): {meta.description or meta.architecture}"
        if epochs:
            detail += f"; {epochs} epochs"
        if run.seconds:
            cores = run.machine.cpu_cores if run.machine else "?"
            detail += f" in {run.seconds / 60:.0f} minutes on {cores} CPU cores"
        lines.append(detail + ".")
    return lead + "\n\n" + "\n".join(lines)


def batch_lead(summary_text: str) -> str:
    return f"Here is what each model read across your slices: {summary_text}."


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


# The page's frame: its header, the preview a shared link shows, and what `tumor-ai serve` prints when it starts.
APP_TITLE = "tumor-ai: brain-tumour MRI classifier"
PREVIEW_ALT = "One brain MRI slice of each class the models tell apart, as the app's examples show them"


def what_it_does(labels: list[str], models: list[str]) -> str:
    """What the app does, from its models' classes and titles ("a Custom CNN", ...): the header and the preview card."""
    classes = [display_name(label).lower() for label in labels]
    return (
        f"Sort a brain MRI slice into {', '.join(classes[:-1])} or {classes[-1]} with {listed(models)}, "
        "and see where each one looked (Grad-CAM)."
    )


def preview_tagline(models: int) -> str:
    """The preview picture's line under the app's name."""
    if models == 1:
        return "Brain MRI slices through a model, and where it looked"
    return f"Brain MRI slices through {({2: 'two', **NUMBER_WORDS}).get(models, models)} models, and where each one looked"


def share_description(labels: list[str], models: list[str]) -> str:
    """The sharing preview's description: what the app does, and that it is not a diagnosis."""
    return f"{what_it_does(labels, models)} Research and teaching only: not a diagnosis."


def started(local_url: str, share_asked: bool, share_url: str | None, share_reachable: bool, on_space: bool) -> list[str]:
    """What ``tumor-ai serve`` prints once the app answers: where it runs and, in one consistent sentence, the public link
    (Gradio prints a link it opened itself; its advice to edit ``launch()`` does not apply to a command)."""
    lines = [f"* Running on local URL:  {local_url}"]
    if on_space:
        return lines
    if share_asked and not share_url:
        why = (
            "Gradio could not open one (its reason is above)"
            if share_reachable
            else "Gradio's share service cannot be reached from here"
        )
        lines.append(f"* No public link: {why}; the app still works at {local_url}")
    elif not share_asked:
        lines.append("* For a public link to show the app to others, start it with --share.")
    return lines


# While the models load behind the page (tumor_ai.app.loading), and if they cannot be loaded.
MODELS_LOADING = "Loading the models… The page works already; an answer asked for now comes as soon as they are ready."


def models_still_loading(seconds: float) -> str:
    """The answer to a request that waited ``seconds`` for the models and they are still not ready."""
    return f"The models are still loading after {seconds:.0f} seconds of waiting; ask again in a minute."


def models_failed(reason: str) -> str:
    """The one sentence the page and every answer give when the models could not be loaded; ``reason`` is the loader's
    own sentence ("models/cnn: model.keras is damaged or incomplete and cannot be loaded (ValueError).")."""
    return f"The models could not be loaded, so no slice can be read until the app is restarted: {reason.rstrip('.')}."


# The evidence maps: what their colours mean, and why a map may end in a hard straight edge.
MAP_CAVEAT = (
    "The map (Grad-CAM or a variant: each model card says which, and how often it points at the tumour) shows where a "
    "model found the evidence for a class: where it looked, **not a segmentation** of the tumour, and not always the "
    "tumour: the About tab says how often it is."
)
LEGEND_ENDS = ("weak", "strong evidence")
COLOUR_NAMES = ((0.2, "dark blue"), (0.4, "blue"), (0.55, "green"), (0.7, "yellow"), (0.85, "orange"), (1.0, "red"))


def colour_name(value: float) -> str:
    """The colour the maps draw ``value`` (0..1) in, as a person names it (``tumor_ai.core.explain.jet``)."""
    return next((name for top, name in COLOUR_NAMES if value < top), "red")


def map_strength(label: str, probability: float, is_answer: bool, peak: float) -> str:
    """What the colour bar under a map says: how strong the map is drawn (``tumor_ai.core.explain.drawn_strength``)
    and so how far up the bar its strongest point reaches (``peak``, 0..1)."""
    name = display_name(label)
    if peak <= 0.0:
        return f"The map for {name} is empty: no evidence for it anywhere in this slice."
    if is_answer:
        return (
            f"Drawn at full strength: red marks the strongest evidence for {name}, the model's answer, in this slice; "
            "blue marks weak evidence, and no colour none."
        )
    if probability < WEAK_EVIDENCE:
        return (
            f"Weak evidence: {name} is not the model's answer and the model gives it only {probability:.1%}, so its "
            f"map is drawn that faint: at most {colour_name(peak)}, never red."
        )
    return (
        f"{name} is not the model's answer: its map is drawn as strong as the model finds it likely ({probability:.0%}), "
        f"so its strongest evidence shows as {colour_name(peak)}, not red."
    )


COMPARE_STRENGTH = (
    "Each overlay is its model's evidence for its own answer, drawn at full strength: red marks the strongest evidence "
    "in this slice, blue weak evidence, and no colour none."
)


def edge_caveat(crops: dict[str, str]) -> str:
    """Why a map may end in a hard straight edge inside the head: the models that read only the square around the head
    (``crop`` "head" in their metadata) have no map outside it."""
    names = [name for name, crop in crops.items() if crop == "head"]
    if not names:
        return ""
    several = len(names) > 1
    who = f"The {listed(names)} model{'s read' if several else ' reads'}"
    return (
        f"{who} only the square around the head, so {'their maps stop' if several else 'its map stops'} at that square's "
        "edges: a hard straight edge in a map is where the model's input ends, not a finding."
    )


def map_caveat(crops: dict[str, str]) -> str:
    """The caveat under every map: what a map is, and (where a model crops) why one may end in a straight edge."""
    return f"_{MAP_CAVEAT}_" + (f" _{edge_caveat(crops)}_" if edge_caveat(crops) else "")


# The About tab's comparison of the models: every figure read from their metadata, so it stays right when one is retrained.
ECE_MARGIN = 0.005  # calibration errors closer than this are alike (the metadata keeps no interval for them)


class _Measure(NamedTuple):
    """One row of the comparison: how to read it from a model's metadata and which way is better."""

    title: str
    higher_is_better: bool
    value: Callable[[ModelMetadata], float | None]
    shown: Callable[[float], str]
    interval: Callable[[ModelMetadata], tuple[float, float] | None]


def _scores(metadata: ModelMetadata):
    return metadata.metrics.validation if metadata.metrics else None


def _accuracy_interval(metadata: ModelMetadata, value: float | None) -> tuple[float, float] | None:
    """A share's rough 95% interval on the validation images (binomial), for telling a real gap from noise."""
    scores = _scores(metadata)
    if value is None or not scores or not scores.images:
        return None
    half = 1.96 * math.sqrt(max(value * (1 - value), 1e-9) / scores.images)
    return value - half, value + half


def _figure_interval(figure) -> tuple[float, float] | None:
    return (figure.low, figure.high) if figure is not None else None


def _score_measure(title: str, field: str) -> _Measure:
    """A validation score ("accuracy", "macro_f1") as a percentage, with its binomial interval."""

    def value(metadata: ModelMetadata) -> float | None:
        scores = _scores(metadata)
        return getattr(scores, field) if scores else None

    return _Measure(title, True, value, lambda v: f"{v:.1%}", lambda m: _accuracy_interval(m, value(m)))


def _found_measure(title: str, higher_is_better: bool, figure: Callable) -> _Measure:
    """A figure of the localisation block (``figure`` picks it), with the interval its bootstrap recorded."""

    def found(metadata: ModelMetadata):
        return figure(metadata.localisation) if metadata.localisation else None

    def value(metadata: ModelMetadata) -> float | None:
        measured = found(metadata)
        return measured.value if measured is not None else None

    return _Measure(title, higher_is_better, value, lambda v: f"{v:.0%}", lambda m: _figure_interval(found(m)))


MEASURES = {
    "accuracy": _score_measure("Accuracy (validation split)", "accuracy"),
    "macro_f1": _score_measure("Macro-F1 (every class counts the same)", "macro_f1"),
    "calibration": _Measure(
        "Calibration error (ECE; lower is better)",
        False,
        lambda m: m.calibration.ece_after,
        lambda v: f"{v:.3f}",
        lambda m: None,  # no interval recorded: ``leader`` compares with ``ECE_MARGIN`` instead
    ),
    "pointing": _found_measure("Map's peak on the tumour (pointing game)", True, lambda found: found.pointing_game),
    "erased": _found_measure(
        "Still names a tumour with the tumour erased (lower is better)", False, lambda found: found.erased.tumour_kept
    ),
}


def leader(metadata: dict[str, ModelMetadata], key: str) -> tuple[str, str, bool] | None:
    """The model ahead on a measure, the next one, and whether it is clearly ahead: the gap is wider than the two 95%
    intervals' half-widths combined (as for two independent shares; a calibration error: lower by at least
    ``ECE_MARGIN``). None when fewer than two models have the figure."""
    measure = MEASURES[key]
    values = {name: measure.value(meta) for name, meta in metadata.items()}
    known = sorted((name for name, value in values.items() if value is not None), key=lambda name: values[name])
    if len(known) < 2:
        return None
    best, runner = (known[-1], known[-2]) if measure.higher_is_better else (known[0], known[1])
    if key == "calibration":
        return best, runner, abs(values[best] - values[runner]) >= ECE_MARGIN
    ahead, behind = measure.interval(metadata[best]), measure.interval(metadata[runner])
    if ahead is None or behind is None:
        return best, runner, values[best] != values[runner]
    margin = math.hypot((ahead[1] - ahead[0]) / 2, (behind[1] - behind[0]) / 2)
    return best, runner, abs(values[best] - values[runner]) > margin


def comparison_table(metadata: dict[str, ModelMetadata]) -> str:
    """The models side by side (a column each), a row per measure; the clear leader of a row in bold."""
    names = list(metadata)
    lines = ["| | " + " | ".join(f"**{name}**" for name in names) + " |", "|---|" + "---:|" * len(names)]
    for key, measure in MEASURES.items():
        ahead = leader(metadata, key)
        cells = []
        for name in names:
            value = measure.value(metadata[name])
            shown = measure.shown(value) if value is not None else "–"
            cells.append(f"**{shown}**" if ahead and ahead[2] and ahead[0] == name else shown)
        lines.append(f"| {measure.title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_notes(metadata: dict[str, ModelMetadata]) -> str:
    """What the comparison's figures are measured on, and what bold means."""
    scores = {name: _scores(meta) for name, meta in metadata.items() if _scores(meta)}
    images = sorted({s.images for s in scores.values()})
    data = f"the same {images[0]:,} validation images" if len(images) == 1 else f"{listed([f'{n:,}' for n in images])} images"
    text = f"Accuracy, macro-F1 and calibration error on {data}" if scores else "No model here records validation figures"
    located = {name: meta.localisation for name, meta in metadata.items() if meta.localisation}
    if located:
        slices = sorted({record.images for record in located.values()})
        text += (
            f"; the map and the tumour-erased test on {listed([f'{n:,}' for n in slices])} held-out tumour images with the "
            "tumour outlined. Erasing the tumour (filled in from its surroundings) should make a model that reads the "
            "lesion stop naming a tumour; erasing a region as large elsewhere, "
            + listed(
                [
                    f"the {name}{' kept its answer' if index == 0 else ''} in {record.erased.control_kept.value:.0%}"
                    for index, (name, record) in enumerate(located.items())
                ]
            )
        )
    return text + ". **Bold**: clearly ahead, beyond the margin those images allow. All from each model's `tumor_ai.json`."


def which_is_better(metadata: dict[str, ModelMetadata]) -> str:
    """ "Which is better, at what?" in two sentences, from the metadata: overall accuracy, then calibration, where the
    map points and whether the answer needs the tumour."""
    if len(metadata) < 2:
        return "Only one model is served, so there is nothing to compare it with."
    most = "more" if len(metadata) == 2 else "most"
    accuracy = MEASURES["accuracy"]
    ahead = leader(metadata, "accuracy")
    if ahead is None:
        first = "The models' metadata does not hold validation figures for them all, so overall accuracy cannot be compared."
    else:
        best, runner, clear = ahead
        a, b = _scores(metadata[best]), _scores(metadata[runner])
        data = f"the same {a.images:,} validation images" if a.images == b.images else f"{a.images:,} and {b.images:,} images"
        if clear:
            first = (
                f"**The {best} is the {most} accurate**: {accuracy.shown(a.accuracy)} against {accuracy.shown(b.accuracy)} "
                f"for the {runner} on {data} (macro-F1 {a.macro_f1:.1%} against {b.macro_f1:.1%})."
            )
        else:
            first = (
                f"**Neither is clearly the {most} accurate**: the {best} {accuracy.shown(a.accuracy)} and the {runner} "
                f"{accuracy.shown(b.accuracy)} on {data}, within the margin those images allow."
            )
    clauses = []
    for key, clear_words, alike_words in (
        (
            "calibration",
            "the {w}'s calibration error is lower (ECE {x} against {y})",
            "the {w} and the {r} are about as well calibrated (ECE {x} and {y})",
        ),
        (
            "pointing",
            "the {w}'s map lands on the tumour more often ({x} against {y} of outlined slices)",
            "the {w}'s and the {r}'s maps land on the tumour about as often ({x} and {y})",
        ),
        (
            "erased",
            "the {w} needs the tumour more (with it erased, it still names a tumour in {x} against {y})",
            "the {w} and the {r} still name a tumour about as often with it erased ({x} and {y})",
        ),
    ):
        ahead = leader(metadata, key)
        if ahead is None:
            continue
        best, runner, clear = ahead
        measure = MEASURES[key]
        x, y = measure.shown(measure.value(metadata[best])), measure.shown(measure.value(metadata[runner]))
        clauses.append((clear_words if clear else alike_words).format(w=best, r=runner, x=x, y=y))
    if not clauses:
        return first + " Their metadata holds no calibration or map figures to compare them on further."
    second = listed(clauses)
    return f"{first} {second[0].upper()}{second[1:]}."


def reliability_missing(names: list[str]) -> str:
    """Why About shows no reliability diagram for these models, and the command that draws one."""
    folders = "its model folder has" if len(names) == 1 else "their model folders have"
    return (
        f"No reliability diagram for the {listed(names)}: {folders} none yet (training draws one; older runs did not). "
        "`python -m training.evaluate --subset validation --reliability --write` draws one from a model's own validation "
        "split; the calibration error before and after the temperature is in the table either way."
    )


# The teaching panel: an example's true class, why a hard case was chosen, and the tumour outline (Predict, Compare).
HARD_CASES = {  # the reasons of tumor_ai.core.examples.CASES; what the models answer now is asked, never recorded here
    "both_wrong": "when it was chosen from the validation split, both models read it as another class",
    "disagree": "when it was chosen from the validation split, the two models read it differently",
    "unsure": "when it was chosen from the validation split, a model's likeliest class was barely likelier than the rest",
    "edge": "its tumour reaches the edge of the head, where a map has little room around it",
}
HARD_CASE_TITLES = {  # the hard cases' titles in the example galleries: why each was chosen, never its class
    "both_wrong": "Hard: both models wrong when chosen",
    "disagree": "Hard: the models disagreed when chosen",
    "unsure": "Hard: a model unsure when chosen",
    "edge": "Hard: the tumour at the head's edge",
}
RETRAINED = "(the models may have been retrained since: what they answer now is what counts)"
GUESS_FIRST = "Guess first, then reveal"
OUTLINE_TOGGLE = "Draw the tumour outline (labelled examples)"
OUTLINE_SHOWN = (
    "The white line is the tumour as the dataset's authors outlined it. Does the hottest part of each map fall inside "
    "it? That is the pointing game the About tab scores."
)
NO_OUTLINE = "No tumour outline for this slice: outlines exist only for the labelled examples that show a tumour."
NO_BATCH_FILE = (
    "That slice's file is no longer in the batch input (removed, or expired from the app's cache); run the batch again."
)


def hard_case(case: str | None) -> str:
    """Why a hard case is in the examples ("A hard case: ..."), or nothing for the one-per-class slices."""
    if not case:
        return ""
    reason = HARD_CASES[case]
    return f" _A hard case: {reason}{' ' + RETRAINED if case != 'edge' else ''}._"


def _judged(model: str, prediction: Prediction | None, truth: str) -> str:
    if prediction is None or not prediction.is_mri:
        return f"{model} refuses it (its MRI check)"
    mark = "right" if prediction.label == truth else "wrong"
    return f"{model} reads {display_name(prediction.label)} ({prediction.confidence:.0%}): **{mark}**"


def example_truth(
    truth: str | None,
    case: str | None,
    guess_first: bool,
    answers: dict[str, Prediction | None] | None,
    from_folder: bool = False,
) -> str:
    """The teaching panel's first lines: the true class, held back until the models answer when guessing first.

    ``answers`` (model -> its answer, None where it refused the slice) is None until the models have answered.
    """
    if truth is None:
        return ""
    where = "its folder in the batch" if from_folder else "a labelled example from the validation split"
    case_text = hard_case(case)
    if answers is None and guess_first:
        return (
            f"**Guess first:** which class is this slice? Then ask the models; its true class ({where}) shows once "
            f"they have answered.{case_text}"
        )
    shown = f"**True class: {display_name(truth)}** ({where})."
    if answers is None:
        return shown + case_text
    judged = "; ".join(_judged(model, prediction, truth) for model, prediction in answers.items())
    return f"{shown} {judged}.{case_text}"


def outline_note(has_outline: bool) -> str:
    """What the outline toggle drew, or why it drew nothing."""
    return OUTLINE_SHOWN if has_outline else NO_OUTLINE


def batch_view(which: str, shown: int, total: int, labelled: int) -> str:
    """The batch filter's line: how many rows it shows, and why a filter on errors may show none."""
    if which == "errors" and not labelled:
        return (
            "No file in this batch is labelled: put the slices in class folders (`glioma/`, `meningioma/`, `notumor/`, "
            "`pituitary/`) in a .zip, and a model's answer that differs from its folder counts as an error."
        )
    what = {
        "all": "every file",
        "errors": f"the files a model reads as another class than their folder ({labelled} labelled)",
        "disagreements": "the files the models read differently",
    }[which]
    return f"{shown} of {total} rows: {what}. Select a row to open that slice in Compare."
