"""`tumor-ai serve` stops with one sentence when it cannot serve (slow: each starts the command)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_serve_without_the_flag_stops_with_one_sentence(slot_models):
    process = subprocess.run(
        [sys.executable, "app.py", "--port", "0", "--cnn", str(slot_models["cnn"]), "--vgg16", str(slot_models["vgg16"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode != 0
    assert "has no not-an-MRI check" in process.stderr and "Traceback" not in process.stderr


@pytest.mark.parametrize(
    "damage,said",
    [
        (
            lambda folder: (folder / "model.keras").write_bytes((folder / "model.keras").read_bytes()[:5000]),
            "model.keras is damaged",
        ),
        (lambda folder: (folder / "model.keras").write_bytes(b""), "model.keras is damaged"),
        (lambda folder: (folder / "tumor_ai.json").write_text('{"name": "cnn", '), "tumor_ai.json is damaged"),
        (lambda folder: (folder / "tumor_ai.json").unlink(), "tumor_ai.json (labels, preprocessing, Grad-CAM layer) is missing"),
        (lambda folder: (folder / "mri_check.npz").write_bytes(b"PK broken"), "mri_check.npz is damaged"),
    ],
    ids=["truncated model", "empty model", "broken metadata", "missing metadata", "broken check"],
)
def test_a_damaged_model_folder_stops_the_app_with_one_sentence(damage, said, slot_models, tmp_path):
    import shutil

    folder = tmp_path / "cnn"
    shutil.copytree(slot_models["cnn"], folder)
    damage(folder)
    process = subprocess.run(
        [sys.executable, "-m", "tumor_ai.app.predict", str(tmp_path), "--cnn", str(folder), "--model", "cnn", "--out", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode != 0 and said in process.stderr, process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in process.stderr and len(errors) == 1 and said in errors[0], process.stderr
