"""Publish trained models to the Hugging Face Hub, alone or as a Gradio Space that serves them.

    HF_TOKEN=hf_... python -m training.publish --space USER/tumor-ai
    python -m training.publish --space USER/tumor-ai --models models/ --model-repo cnn=USER/brain-cnn
    python -m training.publish --model models/vgg16 --repo USER/tumor-ai-vgg16 --private --commit-message "v1"

--space pushes models/cnn and models/vgg16 to USER/tumor-ai-cnn and USER/tumor-ai-vgg16 (or the
--model-repo ones, whose names must end in -cnn / -vgg16), then creates or updates the Space with
app.py, the tumor_ai package, requirements.txt, .gitattributes and a README whose front matter
preloads exactly those repos. --model/--repo pushes one model folder.

A model repository holds the Keras 3 Hub layout (config.json, metadata.json, model.weights.h5:
`keras.saving.load_model("hf://USER/REPO")` works in plain Keras), our tumor_ai.json, the MRI
check, plots, and the model card with Hub front matter. The token comes from HF_TOKEN or a
`hf auth login`. Load one back anywhere with `python app.py --vgg16 hf://USER/REPO`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata, ModelSourceError
from tumor_ai.model.sources import models_dir
from tumor_ai.publish.hub import HubError, push_model


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Either --space (both models and the app) or --model with --repo (one model)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.publish", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--space", help="Space id, USER/NAME: push both models, then the app that serves them")
    parser.add_argument("--models", help="with --space: the folder holding cnn/ and vgg16/ (default: models/)")
    parser.add_argument(
        "--model-repo",
        action="append",
        default=[],
        metavar="NAME=USER/REPO",
        help="with --space: a model's repo, e.g. cnn=USER/brain-cnn (default USER/tumor-ai-NAME)",
    )
    parser.add_argument("--model", help="one model folder written by training.train, e.g. models/vgg16")
    parser.add_argument("--repo", help="with --model: Hub repository id, USER/REPO (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repositories as private")
    parser.add_argument("--commit-message", help="commit message (default: says what was uploaded)")
    args = parser.parse_args(argv)
    if args.space is not None:
        if args.model or args.repo:
            parser.error("use either --space or --model/--repo, not both")
        if args.space.count("/") != 1:
            parser.error("--space must look like USER/NAME")
        if any(entry.count("=") != 1 for entry in args.model_repo):
            parser.error("--model-repo must look like NAME=USER/REPO, e.g. cnn=USER/brain-cnn")
    elif not (args.model and args.repo):
        parser.error("pass --space USER/NAME, or --model FOLDER with --repo USER/REPO")
    elif args.repo.count("/") != 1:
        parser.error("--repo must look like USER/REPO")
    return args


def publish_space(args: argparse.Namespace) -> None:
    """Deploy both models and the Space; print where each went and what is left to do."""
    from huggingface_hub import constants

    from tumor_ai.publish.space import deploy_space

    overrides = dict(entry.split("=", 1) for entry in args.model_repo)
    deployment = deploy_space(args.space, models_dir(args.models), overrides, args.private, args.commit_message)
    for name, repo in deployment.model_repos.items():
        print(f"published {name} to {constants.ENDPOINT}/{repo} ({deployment.commits[repo]})")
    print(f"deployed the app to {constants.ENDPOINT}/spaces/{args.space} ({deployment.commits[args.space]})")
    if deployment.variables:
        print("private models: add an HF_TOKEN secret (a read token) in the Space's settings so it can download them")


def publish_model(args: argparse.Namespace) -> None:
    """Push one model folder and say how to load it back."""
    url = push_model(args.model, args.repo, private=args.private, commit_message=args.commit_message)
    print(f"published {args.model} to https://huggingface.co/{args.repo} ({url})")
    architecture = ModelMetadata.read(Path(args.model) / METADATA_FILE).architecture
    print(f"load it with: python app.py --{architecture} hf://{args.repo}")


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    args = parse_args(argv, prog)
    try:
        if args.space:
            publish_space(args)
        else:
            publish_model(args)
    except (HubError, ModelSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
