"""Choose the app's hard cases from the shipped models' validation split, and write the examples' manifest.

    python scripts/choose_hard_cases.py --data ../shared/data/brain-tumor-mri
    python scripts/choose_hard_cases.py --data ../shared/data/brain-tumor-mri --dry-run   # print the choice only

Four slices a teacher can put in front of a class, each from the validation split that both shipped
models hold out (their ``split.json``: the script refuses models whose splits differ), chosen by rule
so that running it again on the same models and data gives the same four:

- ``both_wrong``: every model reads another class (both confident: the highest of the lower confidence);
- ``disagree``: the models read different classes, one of them the true one (both confident, as above);
- ``unsure``: a model's top probability is the lowest of all (the class it finds likeliest, barely);
- ``edge``: the tumour outline comes closest to the head's border (the convex hull of the head; the smallest gap,
  then the largest tumour); chosen from the data alone, not from any answer.

Every case must pass each model's not-an-MRI check, may not be a copy of an example already chosen (the same
pixels, the same outline's figshare slice, or a thumbnail that correlates above 0.95, mirrored too), and a slice
with a tumour outline comes before one without, so the outline toggle has something to draw. Each case is copied
byte for byte into ``tumor_ai/examples/hard/``; every example's outline (the one-per-class slices' too) goes to
``tumor_ai/examples/masks/`` as a 1-bit PNG; ``tumor_ai/examples/examples.json`` records each example's true
class (its dataset folder), its source file, the rule that chose it, what the models answered then, the models'
checksums and this command. The page shows only the true class and the rule: the models may be retrained since.

Predictions are cached per model checksum in ``.cache/hard_cases/`` (the 1,142 validation slices take a few
minutes per model on two cores).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tumor_ai.core.examples import CASES, MANIFEST, load_examples, pixel_key  # noqa: E402
from tumor_ai.core.imaging import read_image  # noqa: E402
from tumor_ai.core.preprocessing import foreground  # noqa: E402

NEAR_COPY = 0.95  # thumbnail correlation above which two slices count as copies
CHUNK = 32  # slices decoded and classified at once


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the dataset: Training/<class>/*.jpg and masks/Training/")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="the model folders (default: models/)")
    parser.add_argument("--names", nargs="+", default=["cnn", "vgg16"], help="the models to ask (default: cnn vgg16)")
    parser.add_argument("--out", type=Path, default=ROOT / "tumor_ai" / "examples", help="the examples folder")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "hard_cases", help="predictions per model checksum")
    parser.add_argument("--dry-run", action="store_true", help="print the choice; write nothing")
    return parser.parse_args(argv)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validation_split(models: Path, names: list[str]) -> list[str]:
    """The validation images every model holds out; refused when the models' splits differ."""
    splits = {name: json.loads((models / name / "split.json").read_text())["validation"] for name in names}
    first = splits[names[0]]
    for name, split in splits.items():
        if split != first:
            raise SystemExit(f"the {name} model's validation split differs from the {names[0]} model's: choose per model")
    return first


def predictions(models: Path, name: str, data: Path, paths: list[str], cache: Path) -> dict[str, dict]:
    """The model's answer for each validation image (path -> label, probabilities, is_mri), cached by its checksum."""
    checksum = sha256(models / name / "model.keras")
    cached = cache / f"{name}-{checksum[:16]}.json"
    if cached.is_file():
        answers = json.loads(cached.read_text())
        if set(answers) == set(paths):
            return answers
    from tumor_ai.core.inference import Predictor

    predictor = Predictor.from_source(models / name)
    answers = {}
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        images = [read_image(data / "Training" / path).pixels for path in chunk]
        for path, prediction in zip(chunk, predictor.predict(images, batch_size=16)):
            answers[path] = {"label": prediction.label, "probabilities": prediction.probabilities, "is_mri": prediction.is_mri}
        print(f"{name}: {start + len(chunk)}/{len(paths)}", file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(answers))
    return answers


def mask_path(data: Path, path: str) -> Path | None:
    found = data / "masks" / "Training" / Path(path).with_suffix(".png")
    return found if found.is_file() else None


def figshare_ids(data: Path) -> dict[str, str]:
    """Image path -> the figshare slice its outline came from (copies share one)."""
    table = data / "masks" / "Training" / "masks.csv"
    if not table.is_file():
        return {}
    with table.open() as stream:
        return {row["kaggle_path"]: row["figshare_id"] for row in csv.DictReader(stream)}


def border_gap(pixels: np.ndarray, mask: np.ndarray) -> float:
    """How far the tumour outline stays from the head's border, as a share of the head's width (0: it touches).

    The head is the convex hull of the slice's largest bright region (the project's head crop finds the same
    region), so dark tissue inside the skull is inside the head.
    """
    from scipy import ndimage
    from skimage.morphology import convex_hull_image  # a training extra; this script runs where the data is

    bright = foreground(np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.float32))
    components, count = ndimage.label(bright)
    if count == 0:
        return float("inf")
    head = convex_hull_image(components == int(np.argmax(np.bincount(components.ravel())[1:])) + 1)
    inside = ndimage.distance_transform_edt(head)
    width = int(np.ptp(np.flatnonzero(head.any(axis=0)))) + 1
    tumour = mask & head
    return float(inside[tumour].min()) / width if tumour.any() else float("inf")


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    small = np.asarray(Image.fromarray(pixels).convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    small -= small.mean()
    return small / (np.linalg.norm(small) or 1.0)


class Chosen:
    """The slices chosen so far, to keep copies out."""

    def __init__(self, ids: dict[str, str]):
        self.ids, self.keys, self.thumbnails, self.figshare = ids, set(), [], set()

    def add(self, path: str, pixels: np.ndarray) -> None:
        self.keys.add(pixel_key(pixels))
        self.thumbnails.append(thumbnail(pixels))
        if path in self.ids:
            self.figshare.add(self.ids[path])

    def copies(self, path: str, pixels: np.ndarray) -> bool:
        if pixel_key(pixels) in self.keys or self.ids.get(path, "-") in self.figshare:
            return True
        small = thumbnail(pixels)
        mirrored = small[:, ::-1]
        return any(max(float((small * other).sum()), float((mirrored * other).sum())) > NEAR_COPY for other in self.thumbnails)


def answer_text(answers: dict[str, dict], path: str) -> dict[str, str]:
    """What each model answered, for the manifest's record (never shown on the page)."""
    return {name: f"{model[path]['label']} {max(model[path]['probabilities'].values()):.3f}" for name, model in answers.items()}


def choose(data: Path, paths: list[str], answers: dict[str, dict], chosen: Chosen) -> list[dict]:
    """The four hard cases, by the rules in this module's docstring."""
    names = list(answers)

    def truth(path: str) -> str:
        return path.split("/")[0]

    def read(path: str) -> str:
        return [answers[name][path]["label"] for name in names]

    def top(path: str) -> list[float]:
        return [max(answers[name][path]["probabilities"].values()) for name in names]

    readable = [path for path in paths if all(answers[name][path]["is_mri"] for name in names)]
    rules = {
        "both_wrong": (
            [path for path in readable if all(label != truth(path) for label in read(path))],
            lambda path: -min(top(path)),
            "every model reads another class than its folder's (of those, the one whose less sure model is surest)",
        ),
        "disagree": (
            [path for path in readable if len(set(read(path))) > 1 and truth(path) in read(path)],
            lambda path: -min(top(path)),
            "the models read different classes, one of them the true one (of those, the one whose less sure model is surest)",
        ),
        "unsure": (readable, lambda path: min(top(path)), "a model's top probability is the lowest of the split's slices"),
    }
    cases = []
    for case, (candidates, score, rule) in rules.items():  # a slice with a tumour outline first, so there is one to draw
        ordered = sorted(candidates, key=lambda path: (mask_path(data, path) is None, score(path), path))
        path = _first_new(data, ordered, chosen)
        cases.append({"case": case, "path": path, "rule": rule, "answers": answer_text(answers, path)})
    gaps = []
    for path in readable:
        mask = mask_path(data, path)
        if mask is not None:
            pixels = read_image(data / "Training" / path).pixels
            outline = np.asarray(Image.open(mask).convert("L")) > 127
            gaps.append((border_gap(pixels, outline), -int(outline.sum()), path))
    ordered = [path for _, _, path in sorted(gaps)]
    path = _first_new(data, ordered, chosen)
    gap = next(gap for gap, _, candidate in gaps if candidate == path)
    rule = (
        f"the tumour outline comes closest to the head's border (a gap of {gap:.3f} of the head's width, the smallest; "
        "a larger tumour first when gaps tie)"
    )
    cases.append({"case": "edge", "path": path, "rule": rule, "answers": answer_text(answers, path)})
    assert [case["case"] for case in cases] == list(CASES)
    return cases


def _first_new(data: Path, ordered: list[str], chosen: Chosen) -> str:
    for path in ordered:
        pixels = read_image(data / "Training" / path).pixels
        if not chosen.copies(path, pixels):
            chosen.add(path, pixels)
            return path
    raise SystemExit("no candidate left that is not a copy of an example already chosen")


def class_examples(out: Path, data: Path, paths: list[str]) -> list[dict]:
    """The one-slice-per-class examples already in ``out``, each found in the dataset by its bytes (its class folder).

    A slice stored more than once (byte-identical copies) is named by its copy in the validation split ``paths``; all
    its copies must lie in one class folder.
    """
    held_out = set(paths)
    entries = []
    for image in sorted(out.glob("*.jpg")):
        content = image.read_bytes()
        matches = [
            path
            for path in sorted((data / "Training").glob("*/*.jpg"))
            if path.stat().st_size == len(content) and path.read_bytes() == content
        ]
        found = [path.relative_to(data / "Training").as_posix() for path in matches]
        if len({path.split("/")[0] for path in found}) != 1 or not held_out.intersection(found):
            raise SystemExit(f"{image.name}: its copies in the dataset are {found}: not one class, or none held out")
        entry = {"file": image.name, "source": sorted(held_out.intersection(found))[0]}
        if len(found) > 1:
            entry["copies"] = found  # byte-identical, all in the one class folder
        entries.append(entry)
    return entries


def write(out: Path, data: Path, entries: list[dict], record: dict) -> None:
    """Copy the hard cases and every example's outline into ``out``, and write the manifest."""
    hard, masks = out / "hard", out / "masks"
    for folder in (hard, masks):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for entry in entries:
        source = data / "Training" / entry["source"]
        if entry.get("case"):
            shutil.copyfile(source, out / entry["file"])
        mask = mask_path(data, entry["source"])
        if mask is not None:
            entry["mask"] = f"masks/{Path(entry['file']).stem}.png"
            Image.fromarray(np.asarray(Image.open(mask).convert("L")) > 127).convert("1").save(out / entry["mask"], optimize=True)
    (out / MANIFEST).write_text(json.dumps({**record, "examples": entries}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data, out = args.data.resolve(), args.out.resolve()
    paths = validation_split(args.models, args.names)
    answers = {name: predictions(args.models, name, data, paths, args.cache) for name in args.names}
    ids = figshare_ids(data)
    entries = class_examples(out, data, paths)
    chosen = Chosen(ids)
    for entry in entries:
        if entry["source"] not in paths:
            raise SystemExit(f"{entry['file']} ({entry['source']}) is not in the models' validation split")
        chosen.add(entry["source"], read_image(out / entry["file"]).pixels)
        entry.update(label=entry["source"].split("/")[0], case=None)
    for case in choose(data, paths, answers, chosen):
        entries.append(
            {
                "file": f"hard/{case['case'].replace('_', '-')}.jpg",
                "source": case["path"],
                "label": case["path"].split("/")[0],
                "case": case["case"],
                "rule": case["rule"],
                "answers_when_chosen": case["answers"],
            }
        )
    record = {
        "about": (
            "The app's example slices: each one's true class (its folder in the dataset), its tumour outline where the "
            "dataset has one, and for a hard case the rule that chose it. The page shows the true class and the rule, "
            "never answers_when_chosen: the models may have been retrained since; run the command again to choose anew."
        ),
        "command": "python scripts/choose_hard_cases.py --data ../shared/data/brain-tumor-mri",
        "split": {"validation_images": len(paths), "models": args.names, "the_same_in_every_model": True},
        "models": {name: {"model.keras sha256": sha256(args.models / name / "model.keras")} for name in args.names},
        "licence": "slices CC0 (Nickparvar, Kaggle); outlines CC BY 4.0 (Cheng, figshare, doi:10.6084/m9.figshare.1512427.v5)",
    }
    for entry in entries:
        answered = entry.get("answers_when_chosen", "")
        print(f"{entry['file']:<24} {entry['label']:<11} {entry['source']:<34} {entry.get('case') or ''} {answered}")
    if not args.dry_run:
        write(out, data, entries, record)
        examples = load_examples(out)
        print(f"wrote {out / MANIFEST}: {len(examples)} examples, {sum(e.mask is not None for e in examples)} with an outline")


if __name__ == "__main__":
    main()
