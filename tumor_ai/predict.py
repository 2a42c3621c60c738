"""Classify files, folders and zips from the command line: the Batch tab's table as a CSV.

    python -m tumor_ai.predict scans/ slice.png more.zip --out results.csv
    python -m tumor_ai.predict slice.dcm --model vgg16 --vgg16 hf://USER/tumor-ai-vgg16

Each row: file, each model's class (or "not a brain MRI") and calibrated confidence, whether
the models agree, and a note (why a file was refused, or e.g. "first frame used"). There is no
cap on the number of images: they are read, classified and written --batch-size at a time, so
memory stays flat, with a progress bar on stderr. Research and teaching only: not a diagnosis.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tumor_ai.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders or .zip archives")
    parser.add_argument("--model", choices=["cnn", "vgg16", "both"], default="both", help="which model(s) to run (default both)")
    parser.add_argument("--cnn", help="CNN source (default: env TUMOR_AI_CNN or models/cnn)")
    parser.add_argument("--vgg16", help="VGG16 source (default: env TUMOR_AI_VGG16 or models/vgg16)")
    parser.add_argument("--out", default="results.csv", help="CSV to write (default results.csv; '-' for stdout)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass and in memory at once (default 16)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tqdm import tqdm

    from tumor_ai.batch import columns, count_inputs, stream_rows
    from tumor_ai.inference import configure_threads, load_predictors
    from tumor_ai.models import ModelSourceError
    from tumor_ai.sources import local_fallbacks, model_sources

    missing = [path for path in args.inputs if not Path(path).exists()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    names = ["cnn", "vgg16"] if args.model == "both" else [args.model]
    configure_threads()
    try:
        sources = model_sources({"cnn": args.cnn, "vgg16": args.vgg16})
        predictors, _, _ = load_predictors({name: sources[name] for name in names}, local_fallbacks())
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    total = count_inputs(args.inputs)
    handle = sys.stdout if args.out == "-" else open(args.out, "w", newline="")  # noqa: SIM115 - closed below
    refused = 0
    try:
        writer = csv.DictWriter(handle, fieldnames=columns(names))
        writer.writeheader()
        with tqdm(total=total, unit="img", desc="classifying", file=sys.stderr, disable=args.quiet) as bar:
            for row in stream_rows(predictors, args.inputs, batch_size=args.batch_size):
                writer.writerow(row)
                refused += row[f"{names[0]} class"] == "error"
                bar.update()
    finally:
        if handle is not sys.stdout:
            handle.close()
    if args.out != "-":
        print(f"{total} files, {refused} refused; wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
