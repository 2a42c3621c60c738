"""The `tumor-ai` command: each subcommand's --help teaches it, installed with the training extras or not."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import ROOT

# Runs `tumor-ai COMMAND ARGUMENTS...` for each command in one process whose imports of the training extras fail, as in
# an installation without `tumor-ai[train]`; prints what each printed, its exit, and whether TensorFlow was imported.
WITHOUT_EXTRAS = textwrap.dedent(
    """
    import contextlib, importlib.abc, importlib.util, io, json, sys

    EXTRAS = ("matplotlib", "sklearn", "skimage", "optuna")

    class NoExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in EXTRAS:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoExtras())
    for name in EXTRAS:
        sys.modules.pop(name, None)
    found = importlib.util.find_spec
    importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] in EXTRAS else found(name, package)
    from tumor_ai.cli import main

    shown = {}
    arguments = json.loads(sys.argv[1])
    for command in sys.argv[2:]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main([command, *arguments])
                code = 0
            except SystemExit as stop:
                code = stop.code
        shown[command] = {"code": code, "out": out.getvalue(), "tensorflow": "tensorflow" in sys.modules}
    print(json.dumps(shown))
    """
)


def _run(arguments: list[str], *commands: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, json.dumps(arguments), *commands],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_publish_help_is_quick_and_its_examples_are_the_command():
    shown = _run(["--help"], "publish")["publish"]
    assert shown["code"] == 0 and not shown["tensorflow"], "publish --help imports no TensorFlow"
    assert "HF_TOKEN=hf_... tumor-ai publish --space USER/tumor-ai" in shown["out"]
    assert "python -m training" not in shown["out"] and "tumor-ai serve --vgg16 hf://USER/REPO" in shown["out"]


def test_every_training_command_teaches_itself_without_the_training_extras():
    commands = ("train", "evaluate", "localise", "audit", "calibrate")
    for command, shown in _run(["--help"], *commands).items():
        assert shown["code"] == 0, (command, shown["out"][-500:])
        assert shown["out"].startswith(f"usage: tumor-ai {command}") and "--help" in shown["out"], command
        assert "python -m training" not in shown["out"], command
        assert shown["out"].rstrip().endswith("pip install 'tumor-ai[train]'"), "the help says what running it needs"


def test_running_a_training_command_without_the_extras_says_what_to_install():
    shown = _run(["--data", "x", "--out", "y"], "train")["train"]
    assert "needs the training extras" in str(shown["code"]) and "pip install 'tumor-ai[train]'" in str(shown["code"])
