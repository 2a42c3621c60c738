"""The app's example slices as data: each one's true class, why a hard case was chosen, and its tumour outline.

``tumor_ai/examples/examples.json`` (written by ``scripts/choose_hard_cases.py``) lists every example: its file,
its true class (the dataset folder it came from), the tumour outline the dataset's authors drew (a mask beside it,
where one exists) and, for a hard case, the key of the reason it was chosen (``CASES``). The page shows the true
class and that reason, never what the models answered when the case was chosen: the models may have been retrained
since, so the page asks them again.

An upload loses its name, so a slice is matched to an example by its content: a hash of the decoded pixels
(``pixel_key``, as the batch folds copies), the same whatever the file was called or whether it came through the
example gallery, a file button or a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from tumor_ai.core.imaging import pixel_key, read_image  # noqa: F401 - pixel_key: its old home, for scripts and tests

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"  # package data: the wheel has them
MANIFEST = "examples.json"
CASES = ("both_wrong", "disagree", "unsure", "edge")  # the hard cases' reasons (tumor_ai.core.wording.HARD_CASES)


@dataclass(frozen=True)
class Example:
    """One example slice: its file, its true class, why it was chosen (a hard case) and its tumour outline (a mask)."""

    path: Path
    label: str
    case: str | None = None  # a key of CASES; None for the one-slice-per-class examples
    mask: Path | None = None
    source: str = ""  # the file in the dataset it is a byte-for-byte copy of

    @property
    def hard(self) -> bool:
        return self.case is not None


def load_examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """The examples the manifest in ``folder`` lists, in its order (the one-per-class slices, then the hard cases)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return []
    entries = json.loads(manifest.read_text())["examples"]
    examples = []
    for entry in entries:
        case = entry.get("case")
        if case is not None and case not in CASES:
            raise ValueError(f"{manifest}: unknown case '{case}' for {entry['file']}; known: {', '.join(CASES)}")
        mask = entry.get("mask")
        path, mask_path = folder / entry["file"], folder / mask if mask else None
        examples.append(Example(path, entry["label"], case, mask_path, entry.get("source", "")))
    return examples


class ExampleBook:
    """The examples by content: which example a decoded slice is, and its outline at any size."""

    def __init__(self, examples: list[Example]):
        self.examples = examples
        self._by_key = {pixel_key(read_image(example.path).pixels): example for example in examples}

    def find(self, pixels: np.ndarray | None) -> Example | None:
        """The example whose pixels these are, or None (any other slice)."""
        return None if pixels is None else self._by_key.get(pixel_key(pixels))

    def outline(self, pixels: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        """The tumour mask of the example these pixels are, at ``shape`` = (height, width); None when there is none."""
        example = self.find(pixels)
        if example is None or example.mask is None:
            return None
        return mask_at(example.mask, shape)


def mask_at(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file as booleans at ``shape`` (nearest neighbour: an outline keeps its edge)."""
    mask = Image.open(path).convert("L")
    if mask.size != (shape[1], shape[0]):
        mask = mask.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(mask) > 127


@lru_cache(maxsize=1)
def book() -> ExampleBook:
    """The shipped examples, decoded once (eight small slices: a fraction of a second)."""
    return ExampleBook(load_examples())
