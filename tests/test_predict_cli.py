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
