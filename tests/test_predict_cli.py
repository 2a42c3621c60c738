"""`python -m tumor_ai.app.predict` at scale: shards that cover an archive once, and a resume that skips finished rows."""

from __future__ import annotations

import csv

import pytest

from tumor_ai.app.predict import main


@pytest.fixture
def folder(tmp_path, example_paths):
    inputs = tmp_path / "archive"
    inputs.mkdir()
    for index in range(7):
        label = list(example_paths)[index % 4]
        (inputs / f"{index}_{label}.jpg").write_bytes(example_paths[label].read_bytes())
    return inputs


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _run(folder, slot_models, out, *extra: str) -> None:
    main(
        [
            str(folder),
            "--cnn",
            str(slot_models["cnn"]),
            "--model",
            "cnn",
            "--out",
            str(out),
            "--quiet",
            "--allow-no-mri-check",
            *extra,
        ]
    )


def test_shards_cover_every_file_exactly_once(folder, slot_models, tmp_path):
    parts = []
    for index in (1, 2, 3):
        _run(folder, slot_models, tmp_path / f"part{index}.csv", "--shard", f"{index}/3")
        parts.append([row["file"] for row in _rows(tmp_path / f"part{index}.csv")])
    names = [name for part in parts for name in part]
    assert sorted(names) == sorted(path.name for path in folder.iterdir())


def test_resume_keeps_finished_rows_and_classifies_only_the_rest(folder, slot_models, tmp_path, monkeypatch):
    import tumor_ai.core.batch as batch

    whole = tmp_path / "whole.csv"
    _run(folder, slot_models, whole)
    lines = whole.read_text().splitlines(keepends=True)
    interrupted = tmp_path / "interrupted.csv"
    interrupted.write_text("".join(lines[:3]) + lines[3][:10])  # header, two rows, a row cut off by a kill
    decoded = []
    original = batch.read_image
    monkeypatch.setattr(batch, "read_image", lambda *a, **k: decoded.append(a[0]) or original(*a, **k))
    _run(folder, slot_models, interrupted, "--resume")
    assert len(decoded) == 7 - 2, "the two finished rows are not classified again"
    resumed, first = (sorted(_rows(path), key=lambda row: row["file"]) for path in (interrupted, whole))
    assert [row["file"] for row in resumed] == [row["file"] for row in first]
    for again, before in zip(resumed, first):  # batches of 5 and 7 differ in the last digits, never in the answer
        for key, value in before.items():
            if (key.endswith("confidence") or " p(" in key) and value:
                assert float(again[key]) == pytest.approx(float(value), abs=1e-4), key
            else:
                assert again[key] == value, key


def test_a_bad_shard_is_one_sentence(folder, slot_models, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _run(folder, slot_models, tmp_path / "x.csv", "--shard", "4/3")
    assert "--shard takes K/N with 1 <= K <= N" in capsys.readouterr().err


def test_malformed_files_cost_one_row_each_in_the_cli_and_the_batch_tool(folder, slot_models, slot_predictors, tmp_path):
    """Issue 41.5: a decoder's own exception (a text window width, a broken TIFF page) aborted the whole run."""
    from test_decoder_fuzz import ODD

    from tumor_ai.app.tools import Toolbox

    for index, (name, build) in enumerate(ODD.values()):
        (folder / f"odd{index}_{name}").write_bytes(build())
    out = tmp_path / "rows.csv"
    _run(folder, slot_models, out)
    rows = _rows(out)
    assert len(rows) == 7 + len(ODD)
    assert all(row["cnn class"] not in ("", "error") for row in rows if not row["file"].startswith("odd"))
    summary = Toolbox(slot_predictors).summarise_batch([str(path) for path in sorted(folder.iterdir())])
    assert summary.text.startswith(f"{7 + len(ODD)} files · ")


def test_a_pipe_named_zip_and_an_unreadable_file_cost_one_row_each(folder, slot_models, tmp_path, monkeypatch):
    """Issue 41.10: a FIFO named .zip hung the run for ever; an unreadable file crashed it with no rows."""
    import contextlib
    import os
    import threading
    from pathlib import Path

    pipe = folder.parent / "archive.zip"
    os.mkfifo(pipe)

    def unblock():  # if a reader ever blocks on the pipe, end the wait so the test fails rather than hangs
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(20, unblock)
    timer.daemon = True
    timer.start()
    locked = folder / "locked.jpg"
    locked.write_bytes((folder / "0_glioma.jpg").read_bytes())
    real_read = Path.read_bytes

    def read_bytes(self):  # no read permission (the tests may run as root, who reads anything)
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    out = tmp_path / "rows.csv"
    try:
        main([str(folder), str(pipe), "--cnn", str(slot_models["cnn"]), "--model", "cnn", "--out", str(out), "--quiet",
              "--allow-no-mri-check"])  # fmt: skip
    finally:
        timer.cancel()
    rows = {row["file"]: row for row in _rows(out)}
    assert len(rows) == 9
    assert "not a regular file" in rows["archive.zip"]["note"] + rows["archive.zip"].get("error", "")
    assert rows["locked.jpg"]["cnn class"] == "error"


def test_out_is_never_replaced_without_overwrite(folder, slot_models, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    out.write_text("precious\n")
    with pytest.raises(SystemExit):
        _run(folder, slot_models, out)
    assert out.read_text() == "precious\n" and "--overwrite" in capsys.readouterr().err
    _run(folder, slot_models, out, "--overwrite")
    assert len(_rows(out)) == 7
    header_only = tmp_path / "header.csv"
    header_only.write_text(out.read_text().splitlines()[0] + "\n")
    _run(folder, slot_models, header_only, "--resume")  # a file with its header but no rows is continued, not replaced
    text = header_only.read_text()
    assert text.count("file,") == 1 and len(_rows(header_only)) == 7
