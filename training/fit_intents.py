"""Fit the Assistant's intent classifier, and say how well it reads the questions students ask.

    python -m training.fit_intents            # fit on training/intent_phrasings.txt, write tumor_ai/core/intents.npz
    python -m training.fit_intents --report   # only measure: cross-validation on the phrasings, and the test corpus

The classifier is a multinomial logistic regression (scikit-learn, here only) over the features
``tumor_ai.core.intents.features`` gives a message (character 2- to 4-grams of each word, words, word pairs),
weighted by sublinear tf-idf. Serving reads the vocabulary, idf and weights back with numpy alone. It is fitted
on the phrasings in ``training/intent_phrasings.txt`` only; ``tests/data/assistant_corpus.csv`` (other
questions, written the way students write them) measures it, through the same ``intent_of`` the Assistant calls,
and is never fitted on.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from tumor_ai.core import intents

ROOT = Path(__file__).resolve().parent.parent
PHRASINGS = Path(__file__).with_name("intent_phrasings.txt")
CORPUS = ROOT / "tests" / "data" / "assistant_corpus.csv"
C = 20.0  # the inverse regularisation strength


def read_phrasings(path: Path = PHRASINGS) -> list[tuple[str, str]]:
    """``(question, intent)`` pairs from the "intent | question" lines."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            intent, _, text = line.partition("|")
            pairs.append((text.strip(), intent.strip()))
    return pairs


def read_corpus(path: Path = CORPUS) -> list[tuple[str, bool, str]]:
    """``(message, has_slice, intent)`` rows of the test corpus."""
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["message"], row["has_slice"] == "yes", row["intent"]) for row in csv.DictReader(handle)]


def fit(pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The arrays ``tumor_ai.core.intents.IntentModel`` reads."""
    from sklearn.linear_model import LogisticRegression

    counted = [intents.features(text) for text, _ in pairs]
    vocabulary = sorted({key for counts in counted for key in counts})
    index = {key: i for i, key in enumerate(vocabulary)}
    document_frequency = np.zeros(len(vocabulary))
    for counts in counted:
        document_frequency[[index[key] for key in counts]] += 1
    idf = (np.log((1 + len(pairs)) / (1 + document_frequency)) + 1).astype(np.float32)
    matrix = np.zeros((len(pairs), len(vocabulary)), np.float32)
    for row, counts in enumerate(counted):
        columns, values = intents.vectorise(counts, index, idf)
        matrix[row, columns] = values
    names = [name for name in intents.INTENTS if any(intent == name for _, intent in pairs)]
    targets = np.array([names.index(intent) for _, intent in pairs])
    classifier = LogisticRegression(C=C, max_iter=5000).fit(matrix, targets)
    return {
        "vocabulary": np.array(vocabulary),
        "idf": idf,
        "weights": classifier.coef_.T.astype(np.float32),
        "bias": classifier.intercept_.astype(np.float32),
        "intents": np.array(names),
    }


def cross_validated(pairs: list[tuple[str, str]], folds: int = 5, seed: int = 0) -> float:
    """Accuracy on the phrasings, each fold predicted by a model fitted on the others."""
    import tempfile

    order = np.random.default_rng(seed).permutation(len(pairs))
    right = 0
    with tempfile.TemporaryDirectory() as folder:
        for fold in range(folds):
            held = set(order[fold::folds].tolist())
            path = Path(folder) / f"fold{fold}.npz"
            np.savez(path, **fit([pair for i, pair in enumerate(pairs) if i not in held]))
            model = intents.IntentModel(path)
            for i in held:
                probabilities = model.probabilities(pairs[i][0])
                right += max(probabilities, key=probabilities.get) == pairs[i][1]
    return right / len(pairs)


def corpus_report(rows: list[tuple[str, bool, str]]) -> tuple[float, list[tuple[str, str, str]]]:
    """The share of the corpus ``intent_of`` gets right, and each miss as (message, expected, got)."""
    misses = []
    for message, has_slice, expected in rows:
        got = intents.intent_of(message, has_slice).name
        if got != expected:
            misses.append((message, expected, got))
    return 1 - len(misses) / len(rows), misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only measure the committed classifier (fits nothing)")
    parser.add_argument("--out", type=Path, default=intents.MODEL_FILE, help="where to write the classifier")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the test corpus to measure on")
    args = parser.parse_args(argv)
    pairs = read_phrasings()
    if not args.report:
        np.savez_compressed(args.out, **fit(pairs))
        intents.model.cache_clear()
        print(f"wrote {args.out} ({len(pairs)} phrasings, {len(set(i for _, i in pairs))} intents)")
    print(f"5-fold cross-validation on the {len(pairs)} training phrasings: {cross_validated(pairs):.1%}")
    if args.corpus.exists():
        rows = read_corpus(args.corpus)
        accuracy, misses = corpus_report(rows)
        print(f"test corpus ({args.corpus.name}, {len(rows)} questions, never fitted on): {accuracy:.1%}")
        for (expected, got), count in Counter((e, g) for _, e, g in misses).most_common():
            print(f"  {expected} -> {got}: {count}")
        for message, expected, got in misses:
            print(f"    {message!r}: expected {expected}, got {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
