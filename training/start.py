"""Fine-tune from a model folder (``--start-from``): check the source, then copy its weights.

A fine-tune is only an honest split run if its validation images were unseen by the source as
well, so the source must be a split run of the same data whose held-out images are exactly this
run's (same seed, fraction and data). It must also be the same network, fed the same way, or the
weights would mean something else.
"""

from __future__ import annotations

import json
from pathlib import Path

from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata, StartRecord


def check_source(recipe, dataset, validation_paths: list[str]) -> StartRecord:
    """The source's record, or ``SystemExit`` with one sentence saying why it cannot be started from."""
    folder = Path(recipe.start_from)
    if not (folder / METADATA_FILE).exists():
        raise SystemExit(f"error: --start-from {folder}: no {METADATA_FILE} there (a model folder written by training.train)")
    source = ModelMetadata.read(folder / METADATA_FILE)
    wanted = {
        "architecture": recipe.model,
        "input_size": [recipe.input_size, recipe.input_size],
        "crop": recipe.crop,
        "preprocessing": recipe.preprocessing,
    }
    found = {
        "architecture": source.architecture,
        "input_size": list(source.input_size),
        "crop": source.crop,
        "preprocessing": source.preprocessing,
    }
    differ = [f"{key} {found[key]} (this run: {wanted[key]})" for key in wanted if found[key] != wanted[key]]
    if differ:
        raise SystemExit(f"error: --start-from {folder} is another network: {'; '.join(differ)}")
    if source.training.refit or not (folder / "split.json").exists():
        raise SystemExit(f"error: --start-from {folder} trained on every image; start from its split run")
    if source.dataset.fingerprint_sha256 != dataset.fingerprint():
        raise SystemExit(f"error: --start-from {folder} was trained on other data than --data")
    held_out = set(json.loads((folder / "split.json").read_text())["validation"])
    if held_out != set(validation_paths):
        raise SystemExit(
            f"error: --start-from {folder} held out other images than this run would ({len(held_out)} vs "
            f"{len(validation_paths)}): use its --seed and --validation-fraction"
        )
    return StartRecord(
        of=str(folder),
        out=source.training.out,
        command=source.training.command,
        seconds=source.training.seconds,
        held_out="the source held out the same validation images (same data, seed and fraction), checked image by image",
    )


def copy_weights(model, folder: str) -> None:
    """Set ``model``'s weights to those of the model in ``folder`` (layer for layer, same network)."""
    from tumor_ai.model.folder import load_model

    source, _ = load_model(folder)
    model.set_weights(source.get_weights())
