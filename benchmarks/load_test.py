"""Drive the launched app on loopback with concurrent gradio_client users for a bounded time.

    python benchmarks/load_test.py --clients 8 --seconds 60 --queue-size 4

Starts ``python app.py`` on a free loopback port, runs ``--clients`` threads that each send
Predict/Compare requests (examples, and now and then a bad upload) until ``--seconds`` pass,
then reports completed requests, refusals ("queue is full, try again"), other errors, p50/p95
latency, the app's peak RSS, and whether the app still answers. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to send requests (default 60)")
    parser.add_argument("--queue-size", type=int, default=4, help="the app's --queue-size (default 4)")
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
    examples = sorted((ROOT / "examples").glob("*.jpg"))
    bad = Path(tempfile.mkdtemp()) / "not_an_image.jpg"
    bad.write_text("plain text")
    latencies: list[float] = []
    counts = {"completed": 0, "busy": 0, "clear_refusals": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.time() + args.seconds

    def user(index: int) -> None:
        own = Client(url, verbose=False)
        step = 0
        while time.time() < stop_at:
            step += 1
            started = time.perf_counter()
            try:
                if step % 10 == 0:
                    own.predict(handle_file(str(bad)), "cnn", 0.45, "top", api_name="/predict")
                elif step % 2:
                    own.predict(handle_file(str(examples[step % len(examples)])), "vgg16", 0.45, "top", api_name="/predict")
                else:
                    own.predict(handle_file(str(examples[step % len(examples)])), 0.45, api_name="/compare")
                kind = "completed"
            except Exception as error:  # noqa: BLE001 - classify what the client saw
                text = str(error)
                kind = "busy" if "Queue is full" in text else "clear_refusals" if "not an image" in text else "errors"
            with lock:
                counts[kind] += 1
                if kind == "completed":
                    latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=user, args=(index,)) for index in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    still_up = client.predict(handle_file(str(examples[0])), "cnn", 0.45, "top", api_name="/predict")[-1]["model"] == "cnn"
    results = {
        "clients": args.clients,
        "seconds": args.seconds,
        "queue_size": args.queue_size,
        **counts,
        "p50_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_latency_s": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
        "app_peak_rss_mb": round(peak_rss_mb(process.pid)),
        "app_still_serving": still_up,
    }
    process.terminate()
    process.wait(timeout=30)
    for key, value in results.items():
        print(f"{key:<20}{value}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
