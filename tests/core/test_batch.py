"""Many files, folders and zips through the models (tumor_ai.core.batch): rows, limits, constant memory, bad members."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tumor_ai.core.batch import (
    check_limit,
    columns,
    decode,
    folder_label,
    iter_inputs,
    result_rows,
    rows_to_csv,
    run_batch,
    stream_rows,
)


def test_batch_rows_from_files_and_zip(tmp_path, slot_predictors, example_paths):
    archive = tmp_path / "slices.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(example_paths["glioma"], "inner/glioma.jpg")
        handle.writestr("notes.txt", "ignored: not an image suffix")
        handle.writestr("broken.png", b"not a png")
    items = [decode(name, source) for name, source in iter_inputs([example_paths["pituitary"], archive])]
    assert [item.name for item in items] == ["pituitary.jpg", "slices.zip/inner/glioma.jpg", "slices.zip/broken.png"]
    assert items[2].error and "not an image" in items[2].error
    results = run_batch(slot_predictors, items, batch_size=2)
    rows = result_rows(items, results)
    assert rows[0]["agree"] in ("yes", "no") and rows[2]["cnn class"] == "error"
    assert isinstance(rows[0]["cnn confidence"], float)  # full precision; the app rounds only what it shows
    shares = ",".join(f"p({label})" for label in slot_predictors["cnn"].labels)
    header = rows_to_csv(rows).splitlines()[0]
    each = "{0} class,{0} confidence,{0} plausible at 95%,{0} " + shares.replace(",", ",{0} ")
    assert header == "file," + each.format("cnn") + "," + each.format("vgg16") + ",agree,note"
    assert header == ",".join(columns(["cnn", "vgg16"], slot_predictors["cnn"].labels)), "the CLI's header, in order"


def test_the_folder_names_the_class_never_the_file_name():
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    assert folder_label("a.zip/Training/glioma_tumor/x.jpg", labels) == "glioma"
    assert folder_label("no tumour/x.jpg", labels) == "notumor"
    assert folder_label("glioma.jpg", labels) is None
    assert folder_label("scans/x.jpg", labels) is None


def test_batch_limit_is_checked_before_any_decoding(example_paths, tmp_path, monkeypatch):
    archive = tmp_path / "three.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for label in ("glioma", "meningioma", "notumor"):
            handle.write(example_paths[label], f"{label}.jpg")
    monkeypatch.setattr("tumor_ai.core.batch.read_image", lambda *a, **k: pytest.fail("decoded before the count"))
    with pytest.raises(Exception, match="3 images is more than the 2 one batch here takes"):
        check_limit([archive], limit=2)


def test_stream_rows_holds_one_batch_at_a_time(slot_predictors, example_paths, tmp_path, monkeypatch):
    import tumor_ai.core.batch as batch

    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(7):
        (folder / f"{index}.jpg").write_bytes(example_paths["glioma"].read_bytes())
    decoded = []
    original = batch.read_image
    monkeypatch.setattr(batch, "read_image", lambda *a, **k: decoded.append(1) or original(*a, **k))
    rows = stream_rows(slot_predictors, [folder], batch_size=3)
    first = next(rows)
    assert first["file"] == "0.jpg" and len(decoded) == 3  # only the first batch was read
    assert len([first, *rows]) == 7 and len(decoded) == 7


def _zip_with_trouble(path: Path, good: bytes) -> None:
    """A zip whose members are a good slice, an encrypted one, a corrupt one, one too big, a nested zip, a ..\\ name."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("good.jpg", good)
        archive.writestr("locked.jpg", good)
        archive.writestr("broken.jpg", good)
        archive.writestr("huge.png", b"\0" * (41 * 2**20))
        archive.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        archive.writestr("..\\..\\escaped.jpg", good)
    data = bytearray(path.read_bytes())
    start = data.index(b"broken.jpg") + len("broken.jpg") + 200  # inside its compressed bytes
    data[start : start + 50] = bytes(50)
    for signature, flags, name in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):  # mark locked.jpg encrypted
        at = -1
        while (at := data.find(signature, at + 1)) >= 0:
            if data[at + name : at + name + 10] == b"locked.jpg":
                data[at + flags] |= 0x1
    path.write_bytes(bytes(data))


def test_a_zip_with_bad_members_gives_a_row_for_each_and_reads_the_rest(slot_predictors, example_paths, tmp_path):
    archive = tmp_path / "mixed.zip"
    _zip_with_trouble(archive, example_paths["glioma"].read_bytes())
    rows = {row["file"]: row for row in stream_rows(slot_predictors, [archive])}
    assert set(rows) == {
        f"mixed.zip/{name}" for name in ("good.jpg", "locked.jpg", "broken.jpg", "huge.png", "inner.zip", "../../escaped.jpg")
    }
    assert rows["mixed.zip/good.jpg"]["cnn class"] != "error" and rows["mixed.zip/../../escaped.jpg"]["cnn class"] != "error"
    assert "encrypted" in rows["mixed.zip/locked.jpg"]["note"]
    assert "corrupt" in rows["mixed.zip/broken.jpg"]["note"] or "truncated" in rows["mixed.zip/broken.jpg"]["note"]
    assert "unpacks to 41 MB; the limit is 40 MB" in rows["mixed.zip/huge.png"]["note"]
    assert "a zip inside a zip is not opened" in rows["mixed.zip/inner.zip"]["note"]
