"""Classify files, folders and zips from the command line: the Batch tab's table as a CSV.

    tumor-ai predict scans/ slice.png more.zip --out results.csv
    tumor-ai predict slice.dcm --model vgg16 --vgg16 hf://USER/tumor-ai-vgg16

Each row: file, each model's class (or "not a brain MRI") and calibrated confidence, whether
the models agree, and a note (why a file was refused, or e.g. "first frame used"). There is no
cap on the number of images: they are read, classified and written --batch-size at a time, so
memory stays flat, with a progress bar on stderr. Research and teaching only: not a diagnosis.

Large archives: ``--resume`` continues an interrupted run (rows already in --out are skipped),
and ``--shard K/N`` takes only the K-th of N shares of the inputs (by a hash of each file name),
so a job array on an existing scheduler splits one archive across machines:

    # Slurm: sbatch --array=1-8 with, in the script,
    tumor-ai predict /data/archive --shard $SLURM_ARRAY_TASK_ID/8 --out part-$SLURM_ARRAY_TASK_ID.csv --resume
    # Kubernetes Indexed Job (completions: 8; the index is 0-based)
    tumor-ai predict /data/archive --shard $((JOB_COMPLETION_INDEX + 1))/8 --out /out/$JOB_COMPLETION_INDEX.csv --resume
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from tumor_ai.core.engine import ENGINE_ENV, ENGINE_HELP, ENGINES
from tumor_ai.core.safe_text import csv_row, from_csv_cell
from tumor_ai.model import registry as architectures
from tumor_ai.model.sources import add_source_arguments


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m tumor_ai.app.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders or .zip archives")
    parser.add_argument(
        "--model",
        choices=[*architectures.names(), "all", "both"],
        default="all",
        help="which model to run, or 'all' the served ones ('both' is the same; default all)",
    )
    add_source_arguments(parser, where="")
    parser.add_argument("--out", default="results.csv", help="CSV to write (default results.csv; '-' for stdout)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass and in memory at once (default 16)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--allow-no-mri-check", action="store_true", help="run a model without its not-an-MRI check (every file gets a class)"
    )
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out and classify only the rest")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (without it, an existing file is refused)"
    )
    parser.add_argument("--shard", metavar="K/N", help="classify only share K of N (1 <= K <= N), e.g. a job-array index")
    parser.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="'auto' is bfloat16 where the CPU has it (about 2x faster for VGG16), else float32",
    )
    parser.add_argument("--engine", choices=ENGINES, default=os.environ.get(ENGINE_ENV, "auto"), help=ENGINE_HELP)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tqdm import tqdm

    from tumor_ai.core.batch import columns, count_inputs, stream_rows
    from tumor_ai.core.inference import configure_threads, load_predictors
    from tumor_ai.model.metadata import ModelSourceError
    from tumor_ai.model.sources import explicit_sources, local_fallbacks, model_sources

    missing = [path for path in args.inputs if not Path(path).exists()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    out = Path(args.out)
    if args.out != "-" and out.exists() and not (args.resume or args.overwrite):
        parser.error(f"{args.out} exists: pass --resume to continue it, or --overwrite to replace it")
    if args.resume and args.overwrite:
        parser.error("--resume keeps the rows in --out and --overwrite replaces them: pass one")
    keep, done = _selection(args, parser)  # a bad --shard is reported before the models load
    configure_threads()
    try:
        sources = model_sources(explicit_sources(args), args.models)
        names = list(sources) if args.model in ("all", "both") else [args.model]
        if args.model not in (*sources, "all", "both"):
            raise ModelSourceError(f"{args.model} is not served by default: pass --{args.model} SOURCE")
        predictors, _, _ = load_predictors(
            {name: sources[name] for name in names},
            local_fallbacks(args.models),
            args.precision,
            require_mri_check=not args.allow_no_mri_check,
            engine=args.engine,
        )
    except (ModelSourceError, ValueError) as error:  # ValueError: an engine this machine cannot run, in one sentence
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    total = count_inputs(args.inputs, keep)
    append = args.resume and args.out != "-" and out.is_file() and out.stat().st_size > 0  # its header is there
    handle = sys.stdout if args.out == "-" else open(args.out, "a" if append else "w", newline="")  # noqa: SIM115
    refused = 0
    try:
        writer = csv.DictWriter(handle, fieldnames=columns(names, predictors[names[0]].labels))
        if not append:
            writer.writeheader()
        with tqdm(total=total, unit="img", desc="classifying", file=sys.stderr, disable=args.quiet) as bar:
            for row in stream_rows(predictors, args.inputs, batch_size=args.batch_size, keep=keep):
                writer.writerow(csv_row(row))  # names that look like formulas stay text in a spreadsheet
                handle.flush()  # a killed run loses at most the row being written
                refused += row[f"{names[0]} class"] == "error"
                bar.update()
    finally:
        if handle is not sys.stdout:
            handle.close()
    if args.out != "-":
        kept = f", {len(done)} kept from the earlier run" if done else ""
        print(f"{total} files, {refused} refused{kept}; wrote {args.out}", file=sys.stderr)


def _selection(args, parser) -> tuple:
    """Which names to classify (the shard, minus rows already written with --resume), and those rows' names."""
    from tumor_ai.core.batch import shard

    in_shard = None
    if args.shard:
        try:
            index, count = (int(part) for part in args.shard.split("/"))
        except ValueError:
            index, count = 0, 0
        if not 1 <= index <= count:
            parser.error(f"--shard takes K/N with 1 <= K <= N, e.g. 3/8; got {args.shard!r}")
        in_shard = shard(index, count)
    out = Path(args.out)
    done = _finished_rows(out) if args.resume and args.out != "-" and out.exists() else set()

    def keep(name: str) -> bool:
        return (in_shard is None or in_shard(name)) and name not in done

    return keep, done


def _finished_rows(out: Path) -> set[str]:
    """The files already in a CSV; a last line cut off by a kill is removed so the run appends cleanly."""
    text = out.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        out.write_text(text)
    return {from_csv_cell(row["file"]) for row in csv.DictReader(text.splitlines())}


if __name__ == "__main__":
    main()
