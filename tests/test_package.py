"""The package as a user installs it: build the wheel, install it into a fresh virtual environment, run it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tumor_ai import __version__

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

ROOT = Path(__file__).resolve().parent.parent


def _run(*command, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode:
        raise AssertionError(f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result


def test_the_built_wheel_installs_and_classifies_the_examples(tmp_path):
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", ROOT, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("tumor_ai-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tumor_ai/cli.py" in names and "tumor_ai/training/train.py" in names
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == {"tumor_ai"}, "the wheel adds one top-level name (training ships as tumor_ai.training)"
    assert wheel.name.startswith(f"tumor_ai-{__version__}-"), "the wheel's version is tumor_ai.__version__, the one number"
    assert not any(name.startswith(("models/", "tests/", "examples/")) for name in names), "no models or tests in the wheel"
    shipped = {f"tumor_ai/examples/{path.name}" for path in (ROOT / "tumor_ai" / "examples").glob("*.jpg")}
    assert len(shipped) == 4 and shipped <= set(names), "the app's examples are package data"
    assert wheel.stat().st_size < 1_000_000
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, cwd=tmp_path)
    command = venv / "bin" / "tumor-ai"
    assert "predict" in _run(command, "--help", cwd=tmp_path).stdout
    out = tmp_path / "results.csv"
    where = "import importlib.resources as r; print(r.files('tumor_ai') / 'examples')"
    installed = Path(_run(venv / "bin" / "python", "-c", where, cwd=tmp_path).stdout.strip())
    assert installed.is_relative_to(venv), "the installed package's own examples, not the repository's"
    _run(command, "predict", installed, "--models", ROOT / "models", "--out", out, "--quiet", cwd=tmp_path)
    rows = out.read_text().splitlines()
    pictures = [path for path in installed.rglob("*") if path.suffix in (".jpg", ".png")]  # examples, hard cases, outlines
    assert rows[0].startswith("file,cnn class,cnn confidence,cnn plausible at 95%,cnn p(glioma),")
    assert len(rows) == 1 + len(pictures) >= 5
    assert "vgg16 p(pituitary),agree,note" in rows[0]
    assert "Glioma" in next(row for row in rows if row.startswith("glioma.jpg"))
    elsewhere = tmp_path / "nowhere.csv"  # results.csv exists now, and predict keeps an existing --out
    nowhere = _run(command, "predict", ROOT / "tumor_ai" / "examples", "--out", elsewhere, cwd=tmp_path, check=False)
    assert nowhere.returncode == 1 and "pass --models DIR" in nowhere.stderr and "Traceback" not in nowhere.stderr
    recipe = "from tumor_ai import architectures as a; print(a.resolve('training.recipe:Recipe').__module__)"
    assert _run(venv / "bin" / "python", "-c", recipe, cwd=tmp_path).stdout.strip() == "tumor_ai.training.recipe"
    taught = _run(command, "train", "--help", cwd=tmp_path, check=False)  # the help, without the training extras
    assert taught.returncode == 0 and taught.stdout.startswith("usage: tumor-ai train") and "--data" in taught.stdout
    assert taught.stdout.rstrip().endswith("pip install 'tumor-ai[train]'")
    extras = _run(command, "train", "--data", tmp_path, "--out", tmp_path / "run", cwd=tmp_path, check=False)
    assert extras.returncode and "pip install 'tumor-ai[train]'" in extras.stderr
