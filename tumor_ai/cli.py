"""The ``tumor-ai`` command: one entry point, with a subcommand for each thing a person does.

    tumor-ai serve --models models/            # the app, http://127.0.0.1:7860
    tumor-ai predict scans/ --out results.csv  # classify files, folders and zips
    tumor-ai train --data Training/ --out models/cnn/split-run --model cnn
    tumor-ai evaluate --model models/cnn/split-run --data Training/ --subset validation --out report.json
    tumor-ai localise --model models/cnn/split-run --data Training/ --masks masks/Training  # where the maps point
    tumor-ai tune --data Training/ --masks masks/Training --partial br35h/  # an Optuna study over the recipe
    tumor-ai audit --data Training/            # copies and near-copies in a dataset
    tumor-ai calibrate --model models/cnn --data Training/   # fit the not-an-MRI check
    tumor-ai publish --space USER/tumor-ai   # both models to the Hub, and a Space that serves them

``tumor-ai COMMAND --help`` explains each, installed or not. Serving and publishing need only
``pip install tumor-ai``; running ``train``, ``evaluate``, ``localise``, ``tune``, ``audit`` and ``calibrate``
needs ``pip install 'tumor-ai[train]'``. From a clone, ``pip install -r requirements.txt -e .`` puts the
command in the virtual environment. Research and teaching only: not a diagnosis.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys

from tumor_ai.model.registry import import_training_aware

COMMANDS = {
    "serve": ("tumor_ai.app.serve", "run the app (Predict, Compare, Batch, Assistant, About; --mcp for agents) on your models"),
    "predict": ("tumor_ai.app.predict", "classify image files, folders and zips into a CSV, any number, in constant memory"),
    "train": ("training.train", "train a model (split run, or a refit on every image)"),
    "evaluate": ("training.evaluate", "score a model on a folder or on its validation split"),
    "localise": ("training.localise", "measure where a model's maps point and whether it needs the tumour (masks)"),
    "tune": ("training.tune", "tune a recipe with Optuna: accuracy under targets for the reasons and another collection"),
    "audit": ("training.audit", "find exact, mirrored and re-contrasted copies in a dataset"),
    "calibrate": ("training.fit_mri_check", "fit a model's not-an-MRI check on its training split"),
    "publish": ("training.publish", "deploy both models and a Space serving them (or one model) to the Hub"),
}
TRAINING_EXTRAS = "pip install 'tumor-ai[train]'"
EXTRA_MODULES = ("matplotlib", "sklearn", "skimage", "optuna")  # what [train] adds; publish needs none of them


def main(argv: list[str] | None = None) -> None:
    """Run one subcommand's ``main`` with its arguments, named ``tumor-ai COMMAND`` in its ``--help``."""
    parser = argparse.ArgumentParser(
        prog="tumor-ai",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10} {help}" for name, (_, help) in COMMANDS.items()),
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the command's own arguments (see tumor-ai COMMAND --help)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    module_name, _ = COMMANDS[args.command]
    missing = missing_extras(args.command)
    asks_help = any(argument in ("-h", "--help") for argument in args.arguments)
    if missing and not asks_help:
        raise SystemExit(f"error: tumor-ai {args.command} needs the training extras ({', '.join(missing)}): {TRAINING_EXTRAS}")
    module = import_training_aware(module_name)
    module.__doc__ = as_commands(module.__doc__)  # its --help shows its examples as a user types them here
    try:
        module.main(args.arguments, prog=f"tumor-ai {args.command}")  # the module never imports this one
    finally:
        if missing and asks_help:
            print(f"\nRunning tumor-ai {args.command} needs the training extras ({', '.join(missing)}): {TRAINING_EXTRAS}")


def missing_extras(command: str) -> list[str]:
    """The training extras a command needs and this installation lacks (none for serve, predict and publish)."""
    module_name, _ = COMMANDS[command]
    if not module_name.startswith("training.") or command == "publish":
        return []
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def as_commands(text: str | None) -> str | None:
    """A command's help with its examples as this entry point runs them: ``python -m training.publish`` and
    ``python app.py`` become ``tumor-ai publish`` and ``tumor-ai serve``."""
    if not text:
        return text
    for name, (module_name, _) in COMMANDS.items():
        text = re.sub(rf"python -m {re.escape(module_name)}\b(?!\.)", f"tumor-ai {name}", text)
    return text.replace("python app.py --", "tumor-ai serve --")


if __name__ == "__main__":
    main()
