"""Drive the launched app on loopback with concurrent gradio_client users for a bounded time.

    python benchmarks/load_test.py --clients 8 --seconds 60 --queue-size 4
    python benchmarks/load_test.py --clients 1 4 8 --seconds 30 --mix compare --queue-size 16
    python benchmarks/load_test.py --clients 1 8 30 --seconds 60 --mix compare --queue-size 64 --fresh \
        --out benchmarks/load_compare_fresh.json

Starts ``python app.py`` on a free loopback port and, for each ``--clients`` count in turn, runs
that many threads that each send requests until ``--seconds`` pass: ``--mix mixed`` (the default)
alternates Predict (VGG16) and Compare on the example slices, with a bad upload every tenth
request; ``--mix compare`` sends only Compare. Reports, per count: completed requests and
throughput, refusals ("queue is full, try again"), clear refusals of bad uploads, other errors,
p50/p95 latency; then the app's peak RSS and whether it still answers. All clients send the same
four slices, so identical concurrent uploads are the norm, and the app's caches answer most of
them; ``--fresh`` sends every request a slice the app has not seen (an example with one pixel
changed, made before the clock starts), as a class of students uploading their own would. Each
count's throughput is also given as a multiple of one client's, with the CPU's name, flags and
load beside the figures. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.benchmark import free_port, peak_rss_mb  # noqa: E402
from benchmarks.e2e_latency import load_average, machine  # noqa: E402


def fresh_slices(examples: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` PNGs, each an example with one pixel changed: the same picture to a model, new to every cache."""
    import numpy as np
    from PIL import Image

    pictures = [np.asarray(Image.open(path).convert("L")) for path in examples]
    made = []
    for index in range(count):
        pixels = pictures[index % len(pictures)].copy()
        row, column = divmod(index // len(pictures), pixels.shape[1])
        pixels[row % pixels.shape[0], column] ^= 1
        made.append(folder / f"fresh_{index:05d}.png")
        Image.fromarray(pixels).save(made[-1])
    return made


def drive(url: str, clients: int, seconds: float, mix: str, examples: list[Path], bad: Path, fresh=None) -> dict:
    """``clients`` threads sending requests for ``seconds``; what they got back (``fresh``: an iterator of unseen slices)."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    counts = {"completed": 0, "busy": 0, "clear_refusals": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def slice_for(step: int) -> Path:
        if fresh is None:
            return examples[step % len(examples)]
        with lock:
            return next(fresh)

    def user(index: int) -> None:
        own = Client(url, verbose=False)
        step = index
        while time.time() < stop_at:
            step += 1
            picture = slice_for(step)
            started = time.perf_counter()
            try:
                if mix == "mixed" and step % 10 == 0:
                    own.predict(handle_file(str(bad)), "cnn", 0.45, "top", api_name="/predict")
                elif mix == "mixed" and step % 2:
                    own.predict(handle_file(str(picture)), "vgg16", 0.45, "top", api_name="/predict")
                else:
                    own.predict(handle_file(str(picture)), 0.45, api_name="/compare")
                kind = "completed"
            except Exception as error:  # noqa: BLE001 - classify what the client saw
                text = str(error)
                kind = "busy" if "Queue is full" in text else "clear_refusals" if "not an image" in text else "errors"
            with lock:
                counts[kind] += 1
                if kind == "completed":
                    latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=user, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "clients": clients,
        **counts,
        "throughput_per_s": round(counts["completed"] / seconds, 2),
        "p50_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_latency_s": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[8], help="concurrent clients, one run per count (default 8)")
    parser.add_argument("--mix", choices=["mixed", "compare"], default="mixed", help="what each client sends (default mixed)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to send requests (default 60)")
    parser.add_argument("--queue-size", type=int, default=4, help="the app's --queue-size (default 4)")
    parser.add_argument("--fresh", action="store_true", help="send every request a slice the app has not seen")
    parser.add_argument("--out", default="benchmarks/load_results.json", help="JSON results")
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--queue-size", str(args.queue_size)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    client = None
    while client is None:
        try:
            client = Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not up yet
            if time.time() > deadline or process.poll() is not None:
                raise SystemExit("the app did not start") from None
            time.sleep(0.5)
    examples = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg"))
    bad = Path(tempfile.mkdtemp()) / "not_an_image.jpg"
    bad.write_text("plain text")
    fresh = None
    if args.fresh:  # 6 a second, over twice what 2 cores answer, made before any clock starts (then reused)
        fresh = itertools.cycle(fresh_slices(examples, int(6 * args.seconds * len(args.clients)) + 100, bad.parent))
    load_before = load_average()
    runs = [drive(url, count, args.seconds, args.mix, examples, bad, fresh) for count in args.clients]
    one = next((run["throughput_per_s"] for run in runs if run["clients"] == 1), None)
    for run in runs:
        run["throughput_vs_one_client"] = round(run["throughput_per_s"] / one, 2) if one else None
    still_up = client.predict(handle_file(str(examples[0])), "cnn", 0.45, "top", api_name="/predict")[-1]["model"] == "cnn"
    results = {
        "machine": machine(),
        "load_before": load_before,
        "load_after": load_average(),
        "fresh_slices": args.fresh,
        "mix": args.mix,
        "seconds": args.seconds,
        "queue_size": args.queue_size,
        "runs": runs,
        "app_peak_rss_mb": round(peak_rss_mb(process.pid)),
        "app_still_serving": still_up,
    }
    process.terminate()
    process.wait(timeout=30)
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
