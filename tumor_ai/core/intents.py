"""What a question to the Assistant asks for: its intent, and the classes, models and terms it names.

The intent comes from a small linear classifier over character n-grams (2 to 4 letters inside each word) and
words, fitted at build time by ``training.fit_intents`` on its own phrasings and served from ``intents.npz`` with
numpy alone, so a misspelt or reworded question ("wher did the cnn lok", "is ther a tumor") lands where its spelling
is closest. Requests for medical advice are caught twice: by ``ADVICE`` (a bounded pattern) and by the classifier's
``advice`` intent. Names are matched loosely too: "menigioma" is meningioma, "vgg" the vgg16.

Every step is linear in the message's length, and the Assistant caps a message before anything here reads it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tumor_ai.model.labels import display_name

MODEL_FILE = Path(__file__).with_name("intents.npz")
INTENTS = (
    "greeting",  # hello, thanks
    "classify",  # what is in this slice (is there a tumour, what kind, tell me about it)
    "compare",  # every model on the slice (compare, do they agree)
    "evidence",  # where a model looked, why, the evidence for a class
    "confidence",  # how sure a model is, why it is less sure
    "other_model",  # the follow-up "and the other model?"
    "figures",  # a model's validation figures, overall or for one class
    "better",  # which model is better, which to trust
    "term",  # what a word means (glioma, Grad-CAM, calibration ...)
    "training",  # how the models were trained, on what data
    "batch",  # summarise many slices
    "hide",  # hide a region and ask again
    "advice",  # medical advice: refused
    "other",  # none of these
)
# Bounded alternatives only (no ``.*``): a request for advice about a person, never a question about the models.
ADVICE = re.compile(
    r"\b(should i (?!trust|believe|use|pick|choose|rely|go with|ask|try|look|read|upload|start)|do i have|have i got|"
    r"am i (sick|ill|ok|okay|dying|going)|my (own |)(scan|mri|tumou?r|brain|head|results?|doctor|diagnosis|symptoms?)|"
    r"my (mother|mom|mum|father|dad|wife|husband|son|daughter|child|friend|partner|patient|sister|brother)|"
    r"treat(ment)?|surgery|operate|operation|chemo|radiotherapy|prognosis|life expectancy|survive|survival|"
    r"how long\b.{0,40}\blive|is it (cancer|malignant|benign|serious|dangerous|deadly)|medication|medicine|cure)\b"
)
TERMS = {  # a term's key (wording.GLOSSARY) and the spellings that name it
    "glioma": ("glioma", "gliomas", "glial"),
    "meningioma": ("meningioma", "meningiomas", "meninges"),
    "pituitary": ("pituitary", "pituitary tumour", "pituitary adenoma"),
    "notumor": ("no tumour", "notumor", "no tumor"),
    "gradcam": ("gradcam", "grad cam", "heatmap", "heat map", "saliency", "overlay"),
    "layercam": ("layercam", "layer cam"),
    "calibration": ("calibration", "calibrated", "calibrate", "ece", "temperature scaling"),
    "prediction_set": ("prediction set", "prediction sets", "plausible set", "conformal", "plausible"),
    "pointing_game": ("pointing game", "pointing"),
    "recall": ("recall", "sensitivity"),
    "precision": ("precision",),
    "f1": ("f1", "macro f1", "f1 score"),
}
WORD = re.compile(r"[a-z0-9]{1,40}")  # bounded: a 2,000-character run is read 40 letters at a time


@dataclass(frozen=True)
class Intent:
    name: str
    score: float  # the classifier's probability for it (1.0 when a pattern decided)


def words(text: str) -> list[str]:
    """The message's words, lower case, "tumor" spelt "tumour" (one pass over the text)."""
    return [word.replace("tumor", "tumour") for word in WORD.findall(text.lower())]


def features(text: str) -> dict[str, float]:
    """The features one message gives: character 2- to 4-grams of each padded word, words and word pairs."""
    tokens = words(text) or ["<empty>"]
    counts: dict[str, float] = {}
    for token in tokens:
        padded = f" {token} "
        for size in (2, 3, 4):
            for start in range(len(padded) - size + 1):
                gram = "c:" + padded[start : start + size]
                counts[gram] = counts.get(gram, 0.0) + 1.0
        counts["w:" + token] = counts.get("w:" + token, 0.0) + 1.0
    for first, second in zip(tokens, tokens[1:]):
        counts[f"b:{first} {second}"] = counts.get(f"b:{first} {second}", 0.0) + 1.0
    counts[f"n:{min(len(tokens), 6)}"] = 1.0  # how short the question is ("why?" is a follow-up)
    return counts


def vectorise(counts: dict[str, float], vocabulary: dict[str, int], idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sublinear tf-idf over the known features, L2-normalised, as (indices, values)."""
    known = [
        (vocabulary[key], (1.0 + math.log(value)) * idf[vocabulary[key]]) for key, value in counts.items() if key in vocabulary
    ]
    if not known:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    indices = np.array([index for index, _ in known], np.int64)
    values = np.array([value for _, value in known], np.float32)
    return indices, values / max(float(np.linalg.norm(values)), 1e-12)


class IntentModel:
    """The fitted classifier: vocabulary, idf weights and a linear layer (``training.fit_intents`` writes it)."""

    def __init__(self, path: Path = MODEL_FILE):
        with np.load(path, allow_pickle=False) as data:
            self.vocabulary = {str(key): index for index, key in enumerate(data["vocabulary"])}
            self.idf = data["idf"].astype(np.float32)
            self.weights = data["weights"].astype(np.float32)  # (features, intents)
            self.bias = data["bias"].astype(np.float32)
            self.intents = [str(name) for name in data["intents"]]

    def probabilities(self, text: str) -> dict[str, float]:
        indices, values = vectorise(features(text), self.vocabulary, self.idf)
        logits = self.bias + values @ self.weights[indices]
        exp = np.exp(logits - logits.max())
        return dict(zip(self.intents, (exp / exp.sum()).tolist()))


@lru_cache(maxsize=1)
def model() -> IntentModel:
    return IntentModel()


def intent_of(text: str, has_slice: bool = True) -> Intent:
    """What a message (already capped by the Assistant) asks for; advice is caught first by its pattern.

    A slice dropped with no words asks what it shows; no words and no slice is a hello.
    """
    if ADVICE.search(text.lower()):
        return Intent("advice", 1.0)
    if not words(text):
        return Intent("classify" if has_slice and not text.strip() else "greeting" if not text.strip() else "other", 1.0)
    probabilities = model().probabilities(text)
    name = max(probabilities, key=probabilities.get)
    return Intent(name, probabilities[name])


def _close(word: str, spellings: list[str]) -> bool:
    if len(word) < 4:
        return word in spellings
    return bool(difflib.get_close_matches(word, spellings, n=1, cutoff=0.8))


def find_terms(text: str) -> list[str]:
    """The glossary terms a message names, in the order it names them (typos forgiven: "menigioma", "gradcam")."""
    tokens = words(text)
    pairs = [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    found: list[tuple[int, str]] = []
    for key, spellings in TERMS.items():
        singles = [spelling.replace(" ", "") for spelling in spellings]
        doubles = [spelling for spelling in spellings if " " in spelling]
        where = next((i for i, pair in enumerate(pairs) if _close(pair, doubles) if doubles), None)
        if where is None:
            where = next((i for i, token in enumerate(tokens) if _close(token, singles)), None)
        if where is not None:
            found.append((where, key))
    keys = [key for _, key in sorted(found)]
    if "layercam" in keys and "gradcam" in keys and "overlay" not in tokens:  # "layer cam" also reads as "cam"
        keys.remove("gradcam")
    return keys


def find_label(text: str, labels: list[str]) -> str | None:
    """The class a message names, by label or display name, typos forgiven ("menigiomas", "no tumor")."""
    tokens = words(text)
    joined = " ".join(tokens)
    for label in sorted(labels, key=lambda label: -len(display_name(label))):
        names = {label.lower().replace("tumor", "tumour"), display_name(label).lower().replace("tumor", "tumour")}
        if any(f" {name} " in f" {joined} " or name.replace(" ", "") in tokens for name in names):
            return label
    for label in labels:
        spellings = [label.lower(), display_name(label).lower().split()[0], label.lower() + "s"]
        if any(len(token) >= 5 and _close(token, spellings) for token in tokens):
            return label
    return None


def find_models(text: str, names: list[str]) -> list[str]:
    """The models a message names ("the cnn", "VGG-16", "vgg"), in the app's order."""
    tokens = words(text)
    plain = "".join(tokens)
    found = []
    for name in names:
        key = "".join(words(name))
        if key and (key in plain or any(len(token) >= 3 and key.startswith(token) for token in tokens if token.isalpha())):
            found.append(name)
    return found
