"""The server's peak memory under a hostile batch: a small zip of huge images.

    python benchmarks/hostile_memory.py --images 40 --side 7000

Builds a zip of ``--images`` 1-bit PNGs of ``--side`` x ``--side`` pixels (about 6 KB each:
a bright disc with noise, so the PNGs stay small and the decode is real), starts
``python app.py`` on loopback, sends the zip to ``/batch`` and then one of the PNGs to ``/predict``,
and reports the app's resident memory before and its high-water mark after (``VmHWM``), the
seconds taken, and whether the app still answers. The target is a peak under 2 GB.

    python benchmarks/hostile_memory.py --concurrent 8 --side 7071

decodes ``--concurrent`` RGBA PNGs of that side at once, each in its own thread of one fresh
process (the way concurrent requests reach ``read_image``), and reports that process's memory
before, its high-water mark, and its memory after: the case of issue 24 (eight such PNGs at once
once peaked at 4.67 GB). The target is again a peak under 2 GB, and memory returned after.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.benchmark import free_port, peak_rss_mb, rss_mb, start_app  # noqa: E402

TARGET_MB = 2048


def huge_png(side: int, seed: int) -> bytes:
    """A 1-bit PNG, side x side, that decompresses to side² bytes in PIL's mode "1"."""
    rng = np.random.default_rng(seed)
    small = np.zeros((side // 64, side // 64), bool)
    rows, cols = np.indices(small.shape)
    centre = small.shape[0] / 2
    small[(rows - centre) ** 2 + (cols - centre) ** 2 < (0.4 * small.shape[0]) ** 2] = True
    small ^= rng.random(small.shape) < 0.02
    image = Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def rgba_png(side: int, seed: int) -> bytes:
    """An RGBA PNG, side x side, that compresses to a few hundred KB and decodes to 4 x side² bytes."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)
    image = Image.fromarray(tile, "RGBA").resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


CONCURRENT_CHILD = """
import json, sys, threading
from tumor_ai.core.imaging import ImageError, read_image
def status(key):
    return int(next(line for line in open('/proc/self/status') if line.startswith(key)).split()[1]) / 1024
data = open(sys.argv[1], 'rb').read()
before = status('VmRSS:')
outcomes = []
def decode():
    try:
        outcomes.append(read_image(data, name='bomb.png').pixels.shape)
    except ImageError as error:
        outcomes.append(str(error))
threads = [threading.Thread(target=decode) for _ in range(int(sys.argv[2]))]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
print(json.dumps({'rss_before_mb': before, 'peak_rss_mb': status('VmHWM:'), 'rss_after_mb': status('VmRSS:'),
                  'outcomes': sorted({str(outcome) for outcome in outcomes})}))
"""


def concurrent_decodes(count: int, side: int) -> dict:
    """``count`` RGBA PNGs decoded at once in a fresh process: its memory before, at its peak and after."""
    import subprocess

    folder = Path(tempfile.mkdtemp())
    png = folder / "bomb.png"
    png.write_bytes(rgba_png(side, 0))
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", CONCURRENT_CHILD, str(png), str(count)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    measured = json.loads(process.stdout.strip().splitlines()[-1])
    return {
        "case": "concurrent RGBA PNG decodes in one process",
        "concurrent": count,
        "side": side,
        "png_bytes": png.stat().st_size,
        "decoded_megabytes_each": round(4 * side**2 / 2**20),
        **{key: round(value) if isinstance(value, float) else value for key, value in measured.items()},
        "target_mb": TARGET_MB,
        "within_target": measured["peak_rss_mb"] < TARGET_MB,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40, help="PNGs in the zip (default 40)")
    parser.add_argument("--side", type=int, default=7000, help="pixels on each side (default 7000)")
    parser.add_argument("--concurrent", type=int, help="instead: decode this many RGBA PNGs at once in one process")
    parser.add_argument("--out", help="JSON results (default benchmarks/hostile_memory.json, or _concurrent.json)")
    args = parser.parse_args(argv)
    if args.concurrent:
        result = concurrent_decodes(args.concurrent, args.side)
        Path(args.out or "benchmarks/hostile_memory_concurrent.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    args.out = args.out or "benchmarks/hostile_memory.json"

    from gradio_client import Client, handle_file

    folder = Path(tempfile.mkdtemp())
    archive = folder / "huge.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for index in range(args.images):
            handle.writestr(f"huge_{index:02d}.png", huge_png(args.side, index))
    single = folder / "huge.png"
    single.write_bytes(huge_png(args.side, 0))
    port = free_port()
    process, start_seconds = start_app(port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        idle = rss_mb(process.pid)
        started = time.perf_counter()
        summary, *_ = client.predict([handle_file(str(archive))], 0.45, api_name="/batch")
        batch_seconds = time.perf_counter() - started
        details = client.predict(handle_file(str(single)), "cnn", 0.45, "top", api_name="/predict")[-1]
        peak = peak_rss_mb(process.pid)
        still_serving = details["model"] == "cnn"
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {
        "zip_bytes": archive.stat().st_size,
        "images": args.images,
        "side": args.side,
        "decoded_megapixels_each": round(args.side**2 / 1e6, 1),
        "app_start_seconds": round(start_seconds, 1),
        "idle_rss_mb": round(idle),
        "peak_rss_mb": round(peak),
        "target_mb": TARGET_MB,
        "within_target": peak < TARGET_MB,
        "batch_seconds": round(batch_seconds, 1),
        "batch_summary": summary,
        "still_serving": still_serving,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
