"""Many images at once: expand files, folders and zips, run every model in batches, tabulate.

Shared by the app's Batch tab and ``python -m tumor_ai.app.predict``, so both give the same rows.
Inputs are walked lazily (``iter_inputs``) and classified ``batch_size`` at a time
(``iter_batches``), so only one batch of decoded images is ever in memory: the command line
streams a folder of any size, and the web tab keeps only rows and thumbnails. The web tab counts
first and refuses a batch over its cap before any work (``check_limit``). A zip member that is
encrypted, corrupt, too large or itself a zip becomes a row with its reason; the rest are read.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tumor_ai.core.conformal import SERVED_LEVEL
from tumor_ai.core.imaging import IMAGE_SUFFIXES, MAX_FILE_BYTES, ImageError, LoadedImage, read_image
from tumor_ai.core.inference import Prediction, Predictor
from tumor_ai.core.safe_text import csv_row, plain
from tumor_ai.core.wording import NOT_MRI, shown_label
from tumor_ai.model.labels import display_name

MAX_BATCH_IMAGES = 500
MAX_ZIP_BYTES = 500 * 1024 * 1024


@dataclass
class BatchItem:
    """One input: its display name and either a decoded image or the reason it was refused."""

    name: str
    image: LoadedImage | None = None
    error: str | None = None


def member_name(filename: str) -> str:
    """A zip member's path as shown: forward slashes, every part kept (``..`` and ``C:`` too: nothing is
    extracted to disk, and two members must not show the same name), no bidirectional controls."""
    parts = [part for part in filename.replace("\\", "/").split("/") if part not in ("", ".")]
    return plain("/".join(parts) or filename)


def _zip_image_members(archive: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """Members that are images (or nested zips, to be reported), without folders and hidden files."""
    members = []
    for info in archive.infolist():
        shown = member_name(info.filename)
        hidden = shown.startswith("__MACOSX/") or shown.rsplit("/", 1)[-1].startswith((".", "__MACOSX"))
        if not info.is_dir() and not hidden and info.filename.lower().endswith((*IMAGE_SUFFIXES, ".zip")):
            members.append(info)
    if sum(info.file_size for info in members) > MAX_ZIP_BYTES:
        raise ImageError(f"{name}: the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB.")
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str) -> bytes | ImageError:
    """One member's bytes, or why it cannot be read; never more than the size limit is unpacked."""
    if info.flag_bits & 0x1:
        return ImageError(f"{shown}: this zip member is encrypted; unzip it with its password and upload the images.")
    if info.filename.lower().endswith(".zip"):
        return ImageError(f"{shown}: a zip inside a zip is not opened; upload it on its own.")
    if info.file_size > MAX_FILE_BYTES:
        return ImageError(f"{shown}: it unpacks to {info.file_size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    try:
        with archive.open(info) as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except Exception as error:  # noqa: BLE001 (BadZipFile, zlib.error, NotImplementedError, struct.error ...)
        return ImageError(f"{shown}: this zip member is corrupt and cannot be unpacked ({type(error).__name__}).")
    if len(data) > MAX_FILE_BYTES:
        return ImageError(f"{shown}: it unpacks to more than its header says, and past the {MAX_FILE_BYTES // 2**20} MB limit.")
    return data


def _open_zip(path: Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except Exception:  # noqa: BLE001 (a damaged directory fails in many ways: BadZipFile, ValueError, struct.error ...)
        raise ImageError(f"{name}: the zip archive is corrupt.") from None


def _entries(paths: Iterable[str | Path]) -> Iterator[tuple[str, Path]]:
    """Each given file, and each image or zip inside a given folder (sorted), with its display name."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            children = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + (".zip",))
            for child in children:
                yield plain(child.relative_to(path).as_posix()), child
        else:
            yield plain(path.name), path


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


Keep = Callable[[str], bool]  # which names to read (a shard, the rows not yet written)


def _everything(name: str) -> bool:
    return True


def _readers(paths: Iterable[str | Path], keep: Keep) -> Iterator[tuple[str, Callable[[], Path | bytes | ImageError]]]:
    """``(name, read)`` per input in order, where ``read()`` gives its source; nothing is read until called.

    The one walk that both ``iter_inputs`` (which reads) and ``count_inputs`` (which only counts) take.
    """
    for name, path in _entries(paths):
        if path.exists() and not path.is_file():  # a named pipe (even one called .zip) would block the first read
            if keep(name):
                yield (
                    name,
                    lambda name=name: ImageError(
                        f"{name}: this is not a regular file (a pipe, socket or device), so it is not read."
                    ),
                )
            continue
        if not _is_zip(path):
            if keep(name):
                yield name, lambda path=path: path
            continue
        try:
            with _open_zip(path, name) as archive:
                for info in _zip_image_members(archive, name):
                    shown = f"{name}/{member_name(info.filename)}"
                    if keep(shown):
                        yield shown, lambda archive=archive, info=info, shown=shown: _read_member(archive, info, shown)
        except ImageError as error:
            if keep(name):
                yield name, lambda error=error: error


def iter_inputs(paths: Iterable[str | Path], keep: Keep = _everything) -> Iterator[tuple[str, Path | bytes | ImageError]]:
    """``(name, source)`` per image, lazily: a path, a zip member's bytes, or why an archive was refused.

    Names ``keep`` rejects are skipped before anything is read.
    """
    for name, read in _readers(paths, keep):
        yield name, read()


def count_inputs(paths: Iterable[str | Path], keep: Keep = _everything) -> int:
    """How many rows ``iter_inputs`` will give, from names alone (nothing is decoded)."""
    return sum(1 for _ in _readers(paths, keep))


def shard(index: int, count: int) -> Keep:
    """Shard ``index`` of ``count`` (1-based), by a hash of each name: stable however the list is split or grows."""
    return lambda name: zlib.crc32(name.encode()) % count == index - 1


def decode(name: str, source: Path | bytes | ImageError) -> BatchItem:
    """One input decoded, or its refusal as a row (never an exception)."""
    if isinstance(source, ImageError):
        return BatchItem(name, error=str(source))
    try:
        return BatchItem(name, image=read_image(source, name=name))
    except ImageError as error:
        return BatchItem(name, error=str(error))


def check_limit(paths: Iterable[str | Path], limit: int = MAX_BATCH_IMAGES) -> int:
    """The number of inputs, counted from names; over ``limit`` is refused before anything is decoded."""
    total = count_inputs(paths)
    if total > limit:
        raise ImageError(
            f"{total} images is more than the {limit} one batch here takes: split the upload, "
            "or run `python -m tumor_ai.app.predict`, which has no limit."
        )
    return total


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


def iter_batches(
    predictors: dict[str, Predictor], paths: Iterable[str | Path], batch_size: int = 16, keep: Keep = _everything
) -> Iterator[tuple[list[BatchItem], dict[str, list[Prediction | None]]]]:
    """``(items, each model's predictions)`` per ``batch_size`` inputs; the caller keeps what it needs."""
    for items in iter_decoded(paths, batch_size, keep):
        yield items, run_batch(predictors, items, batch_size)


def iter_decoded(
    paths: Iterable[str | Path],
    batch_size: int = 16,
    keep: Keep = _everything,
    read: Callable[[BatchItem], None] | None = None,
) -> Iterator[list[BatchItem]]:
    """The inputs decoded ``batch_size`` at a time (the loop of ``iter_batches``); ``read`` hears of each file as it is read.

    One file's raw bytes at a time: each is decoded (to its bounded size) before the next is read, never a group's raw
    files at once (sixteen large zip members held together took a server past its memory budget).
    """
    inputs = iter_inputs(paths, keep)
    while True:
        items: list[BatchItem] = []
        for name, source in inputs:  # leaving this loop early leaves the generator where it was
            items.append(decode(name, source))
            del source
            if read:
                read(items[-1])
            if len(items) == batch_size:
                break
        if not items:
            return
        yield items


def stream_rows(
    predictors: dict[str, Predictor], paths: Iterable[str | Path], batch_size: int = 16, keep: Keep = _everything
) -> Iterator[dict]:
    """Result rows for inputs of any number, ``batch_size`` images in memory at a time."""
    for items, results in iter_batches(predictors, paths, batch_size, keep):
        yield from result_rows(items, results)


PLAUSIBLE = f"plausible at {SERVED_LEVEL:.0%}"  # the conformal set's column (tumor_ai.core.conformal)


def probability_column(name: str, label: str) -> str:
    """The CSV column with model ``name``'s calibrated probability of ``label``."""
    return f"{name} p({label})"


def columns(names: list[str], labels: list[str] = ()) -> list[str]:
    """The result table's columns for these models, in order; with ``labels``, each class's probability too."""
    fields = ["file"]
    for name in names:
        fields += [f"{name} class", f"{name} confidence", f"{name} {PLAUSIBLE}"]
        fields += [probability_column(name, label) for label in labels]
    return fields + (["agree"] if len(names) > 1 else []) + ["note"]


def result_rows(items: list[BatchItem], results: dict[str, list[Prediction | None]]) -> list[dict]:
    """One row per file: each model's class and calibrated confidence (full precision), and whether they agree."""
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
                row[f"{name} confidence"] = prediction.confidence if prediction.is_mri else ""
                shown.append(row[f"{name} class"])
            plausible = prediction.plausible if prediction is not None else None
            row[f"{name} {PLAUSIBLE}"] = " or ".join(display_name(label) for label in plausible or [])
            if prediction is not None and prediction.is_mri:  # in the order of ``columns``
                row.update({probability_column(name, k): v for k, v in prediction.probabilities.items()})
        if len(results) > 1:
            row["agree"] = "" if len(shown) < len(results) else ("yes" if len(set(shown)) == 1 else "no")
        row["note"] = item.error or "; ".join(item.image.notes if item.image else [])
        rows.append(row)
    return rows


def summary(rows: list[dict], names: list[str]) -> str:
    """One line a person reads first: files, refusals, each model's counts per class, disagreements."""
    refused = sum(1 for row in rows if row[f"{names[0]} class"] == "error")
    parts = [f"{len(rows)} file{'s' * (len(rows) != 1)}", f"{refused} refused"]
    for name in names:
        counts = Counter(row[f"{name} class"] for row in rows if row[f"{name} class"] != "error")
        parts.append(f"{name}: " + (", ".join(f"{label} {count}" for label, count in sorted(counts.items())) or "none"))
    if len(names) > 1:
        disagree = sum(1 for row in rows if row.get("agree") == "no")
        parts.append(f"the models disagree on {disagree}")
    return " · ".join(parts)


ANY_TUMOUR = "tumour"  # a folder of this name: one of the tumour classes, type unknown (training.partial)


def folder_label(name: str, labels: list[str]) -> str | None:
    """The class a file's folder names (``glioma/x.jpg``, ``set.zip/no_tumor/y.png``), ``ANY_TUMOUR``, or None.

    Students upload labelled sets; the folder is matched loosely (case, ``_``, "tumour"/"tumor",
    a ``_tumor`` suffix as in older Kaggle sets), never the file name itself. A ``tumour`` (or
    ``tumor``) folder means a tumour of unknown type, as in collections that never said which.
    """

    def plain_word(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalpha()).replace("tumour", "tumor")

    wanted = {plain_word(ANY_TUMOUR): ANY_TUMOUR}
    for label in labels:
        for spelling in (label, display_name(label), f"{label}tumor"):
            wanted[plain_word(spelling)] = label
    found = [wanted[plain_word(part)] for part in name.split("/")[:-1] if plain_word(part) in wanted]
    return found[-1] if found else None


def labelled_report(rows: list[dict], names: list[str], labels: list[str]) -> str:
    """For files whose folder names a class: each model's accuracy and confusion matrix (markdown); else "".

    Files in a ``tumour`` folder (type unknown) get each model's sensitivity instead: the share read as
    any tumour class.
    """
    found = [(row, folder_label(row["file"], labels)) for row in rows]
    truths = [(row, truth) for row, truth in found if truth is not None and truth != ANY_TUMOUR]
    unknown_type = [row for row, truth in found if truth == ANY_TUMOUR]
    if not truths and not unknown_type:
        return ""
    shown = [display_name(label) for label in labels]
    lines = [f"**Labelled by folder: {len(truths) + len(unknown_type)} of {len(rows)} files.**", ""]
    if unknown_type:
        lines += [*tumour_folder_lines(unknown_type, names, labels), ""]
    for name in names if truths else []:
        read = [(row[f"{name} class"], display_name(truth)) for row, truth in truths if row[f"{name} class"] != "error"]
        right = sum(predicted == truth for predicted, truth in read)
        accuracy = f"{right / len(read):.1%}" if read else "–"
        lines += [f"{name}: accuracy {accuracy} ({right} of {len(read)} readable files)", ""]
        predicted_columns = [*shown, NOT_MRI]
        lines.append(f"| {name}: folder ↓, read as → | " + " | ".join(predicted_columns) + " |")
        lines.append("|---|" + "---:|" * len(predicted_columns))
        counts = Counter(read)
        for truth in shown:
            lines.append(f"| {truth} | " + " | ".join(str(counts[(column, truth)]) for column in predicted_columns) + " |")
        lines.append("")
    return "\n".join(lines)


def tumour_folder_lines(rows: list[dict], names: list[str], labels: list[str]) -> list[str]:
    """Each model's sensitivity on files labelled "a tumour, type unknown": read as any tumour class."""
    tumours = {display_name(label) for label in labels if label != "notumor"}
    lines = []
    for name in names:
        read = [row[f"{name} class"] for row in rows if row[f"{name} class"] != "error"]
        called = sum(label in tumours for label in read)
        share = f"{called / len(read):.1%}" if read else "–"
        lines.append(
            f"- {name}: {share} of {len(read)} readable files in a `{ANY_TUMOUR}` folder (a tumour of unknown type) "
            f"read as a tumour ({called}); the rest as no tumour or not an MRI"
        )
    return lines


def rows_to_csv(rows: list[dict], fields: list[str] | None = None) -> str:
    """The results table as CSV text (header from ``fields`` or the first row)."""
    if not rows and not fields:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields or list(rows[0]))
    writer.writeheader()
    writer.writerows(csv_row(row) for row in rows)  # names that look like formulas stay text in a spreadsheet
    return buffer.getvalue()
