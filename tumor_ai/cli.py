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

``tumor-ai COMMAND --help`` explains each. Serving and publishing need only ``pip install tumor-ai``;
``train``, ``evaluate``, ``localise``, ``tune``, ``audit`` and ``calibrate`` need ``pip install 'tumor-ai[train]'``.
Research and teaching only: not a diagnosis.
"""

from __future__ import annotations

import argparse
import importlib.util
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
    if module_name.startswith("training.") and args.command != "publish":
        missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            raise SystemExit(
                f"error: tumor-ai {args.command} needs the training extras ({', '.join(missing)}): {TRAINING_EXTRAS}"
            )
    module = import_training_aware(module_name)
    module.main(args.arguments, prog=f"tumor-ai {args.command}")  # the module never imports this one


if __name__ == "__main__":
    main()
