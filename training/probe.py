"""A short CNN probe: what each change against the collection cue does, on one small recipe.

    python -m training.probe --data ../shared/data/brain-tumor-mri/Training \\
        --masks ../shared/data/brain-tumor-mri/masks/Training --partial ../shared/data/br35h \\
        --out docs/reports/collection_probe.json

Each arm trains the shipped CNN recipe (acquisition changes, counterfactuals, guidance) small and
short (``ARMS``, ``PROBE``: 128 px, 6 epochs) with one change added, then measures, on data none of
them trained on:

- validation accuracy and macro-F1 on the group-aware validation split (the same split for every arm);
- sensitivity on the held-out Br35H tumour slices (the partial folder's validation groups, one file per
  distinct slice; the same groups for every arm, whether or not the arm trained on the rest);
- where the map points and whether the model needs the tumour (``tumor-ai localise`` on up to
  ``--limit`` validation slices with outlines, the served map only, no deletion curves).

An arm already trained is not trained again, and an interrupted one continues (``--resume``), so the
command can be stopped and run again. The figures are for comparing arms, not models to ship: the
full runs belong to the issues "Accurate and right (1/2)" and "(2/2)".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# The shipped CNN recipe, small and short; the erase growth halves with the input side.
PROBE = ["--model", "cnn", "--input-size", "128", "--epochs", "6", "--warmup-epochs", "1", "--early-stopping-from", "6",
         "--acquisition", "--guidance", "1", "--erase-grow", "1", "2"]  # fmt: skip
ARMS = {
    "baseline": [],
    "partial labels": ["--partial", "{partial}"],
    "partial labels + sequence remaps": ["--partial", "{partial}", "--sequence", "0.3"],
    "sequence remaps": ["--sequence", "0.3"],
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def train_arm(name: str, args: argparse.Namespace) -> Path:
    """Train one arm into ``--work/<arm>`` unless it is there; continue it if it was interrupted."""
    out = Path(args.work) / slug(name)
    if (out / "tumor_ai.json").exists():
        return out
    flags = [flag.format(partial=args.partial) for flag in ARMS[name]]
    command = [sys.executable, "-m", "training.train", *PROBE, *flags, "--data", args.data, "--masks", args.masks,
               "--out", str(out), "--cache-dir", args.cache_dir]  # fmt: skip
    from .engine import run_directory

    if (run_directory(args.cache_dir, out) / "history.csv").exists():
        command.append("--resume")
    print(f"[{name}] {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    return out


def held_out_sensitivity(model_dir: Path, args: argparse.Namespace) -> dict:
    """Sensitivity on the held-out partial slices (the training split's validation groups), as served."""
    from tumor_ai.model.folder import load_model

    from .partial import load_partial
    from .train import partial_sensitivity

    model, metadata = load_model(model_dir)
    partial = load_partial(args.partial, tuple(metadata.input_size), metadata.crop, 0.2, 0, args.cache_dir)
    return {
        "per_slice": partial_sensitivity(model, metadata, partial.images[partial.validation_representatives]),
        "per_image": partial_sensitivity(model, metadata, partial.images[partial.validation]),
    }


def localisation(model_dir: Path, args: argparse.Namespace) -> dict:
    """The served map's pointing game and the tumour-erased test on the validation slices with outlines."""
    from tumor_ai.model.metadata import ModelMetadata

    metadata = ModelMetadata.read(model_dir / "tumor_ai.json")
    report_path = model_dir / "localise.json"
    if not report_path.exists():
        command = [sys.executable, "-m", "training.localise", "--model", str(model_dir), "--data", args.data,
                   "--masks", args.masks, "--methods", metadata.cam_method, "--layers", metadata.cam_layer,
                   "--deletion-images", "0", "--limit", str(args.limit), "--out", str(report_path)]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    report = json.loads(report_path.read_text())
    served = report["maps"][f"{metadata.cam_method}@{metadata.cam_layer}"]
    return {
        "images": report["images"],
        "pointing_game": served["pointing_game"]["value"],
        "relevance_mass": served["relevance_mass"]["value"],
        "tumour_kept": report["erased"]["tumour_kept"]["value"],
        "control_kept": report["erased"]["control_kept"]["value"],
    }


def score_arm(name: str, model_dir: Path, args: argparse.Namespace) -> dict:
    from tumor_ai.model.metadata import ModelMetadata

    metadata = ModelMetadata.read(model_dir / "tumor_ai.json")
    validation = metadata.metrics.validation
    return {
        "arm": name,
        "flags": " ".join(ARMS[name]).replace("{partial}", Path(args.partial).name),
        "validation_accuracy": validation.accuracy,
        "validation_macro_f1": validation.macro_f1,
        "recall": {label: scores.recall for label, scores in metadata.metrics.validation_per_class.items()},
        "other_collection": held_out_sensitivity(model_dir, args),
        "localisation": localisation(model_dir, args),
        "train_seconds": metadata.training.seconds,
        "median_epoch_seconds": metadata.training.throughput.median_epoch_seconds if metadata.training.throughput else None,
    }


def table(rows: list[dict]) -> str:
    """The probe as a Markdown table (the README's)."""
    lines = [
        "| arm | validation accuracy | macro-F1 | held-out Br35H tumour slices called a tumour (per slice) "
        "| map peak on the tumour | tumour erased, tumour class kept | region erased elsewhere, class kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        found, place = row["other_collection"]["per_slice"], row["localisation"]
        lines.append(
            f"| {row['arm']} | {row['validation_accuracy']:.4f} | {row['validation_macro_f1']:.4f} "
            f"| {found['sensitivity']:.3f} ({found['slices']} slices) | {place['pointing_game']:.3f} "
            f"| {place['tumour_kept']:.3f} | {place['control_kept']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="the <class>/ training folder")
    parser.add_argument("--masks", required=True, help="the tumour masks folder (<class>/<stem>.png)")
    parser.add_argument("--partial", required=True, help="the partial-label folder (tumour/ and groups.csv), e.g. Br35H")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="arms to run (default: all)")
    parser.add_argument("--work", default=".cache/probe", help="where each arm's model folder goes")
    parser.add_argument("--cache-dir", default=".cache", help="decoded images, counterfactuals and run backups")
    parser.add_argument("--limit", type=int, default=400, help="validation slices with outlines to localise on")
    parser.add_argument("--out", help="write every arm's figures here as JSON")
    args = parser.parse_args(argv)
    rows = []
    for name in args.arms:
        started = time.time()
        model_dir = train_arm(name, args)
        rows.append(score_arm(name, model_dir, args))
        print(f"[{name}] done in {time.time() - started:.0f} s: {json.dumps(rows[-1])}", flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"recipe": " ".join(PROBE), "arms": rows}, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
