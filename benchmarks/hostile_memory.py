"""The server's peak memory under a hostile batch: a small zip of huge images.

    python benchmarks/hostile_memory.py --images 40 --side 7000

Builds a zip of ``--images`` 1-bit PNGs of ``--side`` x ``--side`` pixels (about 6 KB each:
a bright disc with noise, so the PNGs stay small and the decode is real), starts
``python app.py`` on loopback, sends the zip to ``/batch`` and then one of the PNGs to ``/predict``,
and reports the app's resident memory before and its high-water mark after (``VmHWM``), the
seconds taken, and whether the app still answers. The target is a peak under 2 GB.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40, help="PNGs in the zip (default 40)")
    parser.add_argument("--side", type=int, default=7000, help="pixels on each side (default 7000)")
    parser.add_argument("--out", default="benchmarks/hostile_memory.json", help="JSON results")
    args = parser.parse_args(argv)

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
