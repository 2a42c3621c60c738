"""The house plan holds: imports run app -> publish -> core -> model, the contract needs no TensorFlow, old paths still work."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import import_layers  # noqa: E402

OLD_PATHS = {
    "tumor_ai.architectures": "tumor_ai.model.registry",
    "tumor_ai.sources": "tumor_ai.model.sources",
    "tumor_ai.labels": "tumor_ai.model.labels",
    "tumor_ai.imaging": "tumor_ai.core.imaging",
    "tumor_ai.explain": "tumor_ai.core.explain",
    "tumor_ai.batch": "tumor_ai.core.batch",
    "tumor_ai.card": "tumor_ai.publish.card",
    "tumor_ai.handlers": "tumor_ai.app.handlers",
    "tumor_ai.tools": "tumor_ai.app.tools",
    "tumor_ai.serve": "tumor_ai.app.serve",
}


def test_no_import_runs_back_up_a_wing_and_none_goes_round():
    edges = import_layers.graph()
    assert import_layers.problems(edges) == []
    assert {import_layers.wing(module) for module in edges} >= {"model", "core", "publish", "app"}


def test_the_checker_sees_an_upward_import_and_a_circle():
    edges = {"tumor_ai.core.cam": {"tumor_ai.app.ui"}, "tumor_ai.app.ui": {"tumor_ai.core.cam"}}
    found = import_layers.problems(edges)
    assert "tumor_ai.core.cam (core) imports tumor_ai.app.ui (app): upward" in found
    assert any(line.startswith("circle:") for line in found)


def test_the_contract_and_core_pieces_import_without_tensorflow_or_gradio():
    code = (
        "import sys, tumor_ai.model.metadata, tumor_ai.model.folder, tumor_ai.model.registry, tumor_ai.model.sources, "
        "tumor_ai.model.labels, tumor_ai.core.wording, tumor_ai.core.cam, tumor_ai.core.explain; "
        "print(sorted({'tensorflow', 'keras', 'gradio'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("old", "new"), OLD_PATHS.items())
def test_an_old_path_warns_and_is_the_moved_module(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_the_old_models_module_still_holds_the_contract_and_the_builders():
    sys.modules.pop("tumor_ai.models", None)
    with pytest.warns(DeprecationWarning, match="tumor_ai.model.metadata"):
        models = importlib.import_module("tumor_ai.models")
    from training.networks import build_cnn
    from tumor_ai.model.folder import load_model
    from tumor_ai.model.metadata import ModelMetadata

    assert (models.build_cnn, models.load_model, models.ModelMetadata) == (build_cnn, load_model, ModelMetadata)


def test_an_old_path_still_runs_as_a_command():
    result = subprocess.run([sys.executable, "-m", "tumor_ai.predict", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "--shard" in result.stdout


def test_the_registry_binds_the_builder_where_it_is_defined():
    from tumor_ai.model import registry

    assert registry.get("cnn").builder().__module__ in ("training.networks", "tumor_ai.training.networks")


def repeated_blocks(sources: dict[str, str], size: int = 6) -> list[str]:
    """Where the same ``size`` lines stand twice (stripped; blank lines, comments and imports left out), as "a:1 = b:9"."""
    import ast

    first, found = {}, []
    for name, text in sources.items():
        imports = {
            line
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for line in range(node.lineno, node.end_lineno + 1)
        }
        lines = [
            (number, line.strip())
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#") and number not in imports
        ]
        for start in range(len(lines) - size + 1):
            block = tuple(line for _, line in lines[start : start + size])
            here = f"{name}:{lines[start][0]}"
            if block in first:
                found.append(f"{first[block]} = {here}")
            first.setdefault(block, here)
    return found


def test_no_block_of_six_lines_is_written_twice():
    """One place for each sentence a person reads and each step of the flow: no six lines repeat in tumor_ai/."""
    sources = {str(path.relative_to(ROOT)): path.read_text() for path in sorted((ROOT / "tumor_ai").rglob("*.py"))}
    assert repeated_blocks(sources) == []


def test_the_repeat_check_sees_a_copied_block():
    body = "".join(f"    total += {step}\n" for step in range(6))
    sources = {"a.py": f"import os\n\ndef f(total):\n{body}", "b.py": f"def g(total):\n    # the same\n\n{body}{body}"}
    assert repeated_blocks(sources) == ["a.py:4 = b.py:4", "a.py:4 = b.py:10"]
