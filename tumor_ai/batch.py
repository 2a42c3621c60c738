"""Many images at once: expand files, folders and zips, run every model in batches, tabulate.

Shared by the app's Batch tab and ``python -m tumor_ai.predict``, so both give the same rows.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tumor_ai.imaging import ImageError, LoadedImage, read_image
from tumor_ai.inference import Prediction, Predictor
from tumor_ai.labels import display_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm", ".dicom")
MAX_BATCH_IMAGES = 500
MAX_ZIP_BYTES = 500 * 1024 * 1024
NOT_MRI = "not a brain MRI"


@dataclass
class BatchItem:
    """One input: its display name and either a decoded image or the reason it was refused."""

    name: str
    image: LoadedImage | None = None
    error: str | None = None


def _zip_members(path: Path) -> Iterable[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ImageError(f"{path.name}: the zip archive is corrupt.") from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir() and info.filename.lower().endswith(IMAGE_SUFFIXES)]
        members = [info for info in members if not Path(info.filename).name.startswith((".", "__MACOSX"))]
        if sum(info.file_size for info in members) > MAX_ZIP_BYTES:
            raise ImageError(f"{path.name}: the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB.")
        for info in members:
            yield f"{path.name}/{info.filename}", archive.read(info)


def expand_inputs(paths: Iterable[str | Path], limit: int = MAX_BATCH_IMAGES) -> list[BatchItem]:
    """Files, folders (recursively) and zips to decoded images; a refused file keeps its reason."""
    items: list[BatchItem] = []

    def add(name: str, source: str | Path | bytes) -> None:
        if len(items) >= limit:
            raise ImageError(f"at most {limit} images per batch; split the upload.")
        try:
            items.append(BatchItem(name, image=read_image(source, name=name)))
        except ImageError as error:
            items.append(BatchItem(name, error=str(error)))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + (".zip",)):
                if child.suffix.lower() == ".zip":
                    for name, data in _zip_members(child):
                        add(name, data)
                else:
                    add(child.relative_to(path).as_posix(), child)
        elif path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            try:
                for name, data in _zip_members(path):
                    add(name, data)
            except ImageError as error:
                items.append(BatchItem(path.name, error=str(error)))
        else:
            add(path.name, path)
    return items


def run_batch(
    predictors: dict[str, Predictor],
    items: list[BatchItem],
    batch_size: int = 16,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, list[Prediction | None]]:
    """Each model's predictions for the readable items (``None`` where an item was refused)."""
    readable = [index for index, item in enumerate(items) if item.image is not None]
    results: dict[str, list[Prediction | None]] = {}
    steps = max(len(predictors) * len(readable), 1)
    done = 0
    for name, predictor in predictors.items():
        predictions: list[Prediction | None] = [None] * len(items)
        for start in range(0, len(readable), batch_size):
            chunk = readable[start : start + batch_size]
            for index, prediction in zip(chunk, predictor.predict([items[i].image.pixels for i in chunk], batch_size)):
                predictions[index] = prediction
            done += len(chunk)
            if progress:
                progress(done / steps, f"{name}: {min(start + batch_size, len(readable))}/{len(readable)} images")
        results[name] = predictions
    return results


def shown_label(prediction: Prediction) -> str:
    """What a person sees for a prediction: the class, or the MRI check's refusal."""
    return display_name(prediction.label) if prediction.is_mri else NOT_MRI


def result_rows(items: list[BatchItem], results: dict[str, list[Prediction | None]]) -> list[dict]:
    """One row per file: each model's class and confidence, and whether the models agree."""
    rows = []
    for index, item in enumerate(items):
        row: dict = {"file": item.name}
        shown = []
        for name, predictions in results.items():
            prediction = predictions[index]
            if prediction is None:
                row[f"{name} class"], row[f"{name} confidence"] = "error", ""
            else:
                row[f"{name} class"] = shown_label(prediction)
                row[f"{name} confidence"] = round(prediction.confidence, 4) if prediction.is_mri else ""
                shown.append(row[f"{name} class"])
        if len(results) > 1:
            row["agree"] = "" if len(shown) < len(results) else ("yes" if len(set(shown)) == 1 else "no")
        row["note"] = item.error or "; ".join(item.image.notes if item.image else [])
        rows.append(row)
    return rows


def rows_to_csv(rows: list[dict]) -> str:
    """The results table as CSV text (header from the first row)."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
