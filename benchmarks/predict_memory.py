"""Peak memory of ``python -m tumor_ai.app.predict`` as the archive grows: it must stay flat.

    python benchmarks/predict_memory.py --counts 1000 20000

For each count, fills a temporary folder with that many files (links to the four example
slices, so the disk holds nothing new), runs the CLI on it with the CNN, and samples the
process's resident memory every 0.1 s. Reports the peak, the wall time and the throughput per
count, and the ratio of the largest count's peak to the smallest's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def run(count: int, model: str) -> dict:
    examples = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "archive"
        archive.mkdir()
        for index in range(count):
            (archive / f"{index:06d}.jpg").symlink_to(examples[index % len(examples)])
        out = Path(folder) / "out.csv"
        command = [sys.executable, "-m", "tumor_ai.app.predict", str(archive), "--model", model, "--out", str(out), "--quiet"]
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watched, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        rows = sum(1 for _ in out.open()) - 1
    return {
        "images": count,
        "rows_written": rows,
        "peak_rss_mb": round(peak / 2**20),
        "seconds": round(seconds, 1),
        "images_per_second": round(count / seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 20000], help="archive sizes (default 1000 20000)")
    parser.add_argument("--model", choices=["cnn", "vgg16", "both"], default="cnn", help="model(s) to run (default cnn)")
    parser.add_argument("--out", default="benchmarks/predict_memory.json", help="JSON results")
    args = parser.parse_args(argv)
    runs = [run(count, args.model) for count in args.counts]
    result = {
        "model": args.model,
        "runs": runs,
        "peak_ratio_largest_to_smallest": round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 2),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
