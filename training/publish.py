"""Publish a trained model folder to the Hugging Face Hub.

    HF_TOKEN=hf_... python -m training.publish --model models/vgg16 --repo USER/tumor-ai-vgg16
    python -m training.publish --model models/cnn --repo USER/tumor-ai-cnn --private --commit-message "v1"

The repository holds the Keras 3 Hub layout (config.json, metadata.json, model.weights.h5:
`keras.saving.load_model("hf://USER/REPO")` works in plain Keras), our tumor_ai.json, the MRI
check, plots, and the model card with Hub front matter. The token comes from HF_TOKEN or a
`hf auth login`. Load it back anywhere with `python app.py --vgg16 hf://USER/REPO`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tumor_ai.cli import prog
from tumor_ai.hub import HubError, push_model
from tumor_ai.models import METADATA_FILE, ModelMetadata, ModelSourceError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog("python -m training.publish"), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder written by training.train, e.g. models/vgg16")
    parser.add_argument("--repo", required=True, help="Hub repository id, USER/REPO (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--commit-message", help="commit message (default: 'Upload tumor-ai model NAME')")
    args = parser.parse_args(argv)
    if args.repo.count("/") != 1:
        parser.error("--repo must look like USER/REPO")
    try:
        url = push_model(args.model, args.repo, private=args.private, commit_message=args.commit_message)
    except (HubError, ModelSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"published {args.model} to https://huggingface.co/{args.repo} ({url})")
    architecture = ModelMetadata.read(Path(args.model) / METADATA_FILE).architecture
    print(f"load it with: python app.py --{architecture} hf://{args.repo}")


if __name__ == "__main__":
    main()
