"""Speed of the shipped models and the app on this machine, as medians over repeated runs.

    python benchmarks/benchmark.py --out benchmarks/results.json

Measures: cold start (process start -> app answering HTTP), single prediction + Grad-CAM per
model, what the test-time flip costs (the ratio of that time with the flip on to off, whichever
the model ships), compare (both models, both CAMs, both overlays), batch throughput over 64
images per model, and the app's peak RSS while it serves compare and batch requests. In the
same run it times a naive reference on the same images, as the original project served them:
one ``model.predict`` per image and a separate eager Grad-CAM pass, and prints the speed-ups.
Timings on shared machines are noisy: read the medians and the ratios, not single numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tumor_ai.core.explain import overlay  # noqa: E402
from tumor_ai.core.imaging import read_image  # noqa: E402

TARGETS = {
    "compare_p50_ms": ("<=", 200),
    "cnn_predict_cam_p50_ms": ("<=", 20),
    "vgg16_batch_images_per_s": (">=", 10),
    "cold_start_s": ("<=", 8),
    "app_peak_rss_mb": ("<=", 1536),
}


def median_ms(function, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile wall time of ``function()`` in ms, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def naive_predict_and_cam(model, metadata, pixels: np.ndarray):
    """The original project's way: model.predict for the class, then a separate eager CAM pass."""
    import keras
    import tensorflow as tf

    from tumor_ai.core.preprocessing import normalize, resize

    batch = normalize(resize(pixels, tuple(metadata.input_size))[None], metadata.preprocessing)
    probabilities = model.predict(batch, verbose=0)
    graph = keras.Model(model.inputs, [model.get_layer(metadata.cam_layer).output, model.output])
    with tf.GradientTape() as tape:
        features, outputs = graph(batch)
        score = outputs[:, int(np.argmax(probabilities))]
    gradients = tape.gradient(score, features)
    cam = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(gradients, axis=(1, 2), keepdims=True) * features, axis=-1))
    return probabilities, cam.numpy()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int) -> tuple[subprocess.Popen, float]:
    """Start ``python app.py`` and return it with the seconds until it answered HTTP (its page); it returns once the
    models have loaded too (the page comes first, the models behind it: ``benchmarks/startup.py`` times both), so what
    is measured next is measured on a loaded app."""
    import tempfile

    started = time.perf_counter()
    ready = Path(tempfile.mkdtemp()) / "timings.json"  # the app writes it once its models are loaded
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUMOR_AI_TIMINGS": str(ready)}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    page = None
    while page is None or not ready.exists():
        if page is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                page = time.perf_counter() - started
            except OSError:
                pass
        if process.poll() is not None or time.perf_counter() - started > 300:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    return process, page


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from ``/proc/PID/status``, in MB: ``VmRSS`` now, ``VmHWM`` its high-water mark."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set size (VmHWM), in MB."""
    return rss_mb(pid, "VmHWM")


def app_measurements(images: list[Path], runs: int) -> dict:
    from gradio_client import Client, handle_file

    cold = []
    for _ in range(runs):
        process, seconds = start_app(free_port())
        cold.append(seconds)
        process.terminate()
        process.wait(timeout=30)
    port = free_port()
    process, _ = start_app(port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for path in images:
            client.predict(handle_file(str(path)), 0.45, api_name="/compare")
        client.predict([handle_file(str(path)) for path in images * 4], 0.45, api_name="/batch")
        rss = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "cold_start_s": round(statistics.median(cold), 2),
        "cold_start_runs_s": [round(c, 2) for c in cold],
        "app_peak_rss_mb": round(rss),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results.json", help="JSON results (default benchmarks/results.json)")
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats per measurement (default 30)")
    parser.add_argument("--app-runs", type=int, default=3, help="cold starts to time (default 3)")
    parser.add_argument("--skip-app", action="store_true", help="skip the cold-start and RSS measurements")
    args = parser.parse_args(argv)

    from tumor_ai.core.inference import Predictor, configure_threads

    configure_threads()
    paths = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg"))
    pixels = [read_image(path).pixels for path in paths]
    predictors = {name: Predictor.from_source(ROOT / "models" / name) for name in ("cnn", "vgg16")}
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()}}
    image_cycle = iter(range(10**9))

    def next_image() -> np.ndarray:
        return pixels[next(image_cycle) % len(pixels)]

    batch64 = [pixels[i % len(pixels)] for i in range(64)]
    for name, predictor in predictors.items():
        p50, p95 = median_ms(lambda p=predictor: p.predict_one(next_image()), args.repeats)
        results[f"{name}_predict_cam_p50_ms"], results[f"{name}_predict_cam_p95_ms"] = round(p50, 1), round(p95, 1)
        # What the test-time flip costs: the same predictor with it on and off, interleaved in one run.
        flip_ms = {True: [], False: []}
        shipped = predictor.metadata.test_time_flip
        for _ in range(max(args.repeats // 2, 5)):
            for flip in (True, False):
                predictor.metadata.test_time_flip = flip
                flip_ms[flip].append(predictor.predict_one(next_image())[1] * 1000)
        predictor.metadata.test_time_flip = shipped
        results[f"{name}_test_time_flip"] = shipped
        results[f"{name}_flip_cost_ratio"] = round(statistics.median(flip_ms[True]) / statistics.median(flip_ms[False]), 2)
        naive50, _ = median_ms(
            lambda p=predictor: naive_predict_and_cam(p.model, p.metadata, next_image()), max(args.repeats // 3, 5)
        )
        results[f"{name}_naive_predict_cam_p50_ms"] = round(naive50, 1)
        batch_runs = []
        predictor.predict(batch64[:8])
        for _ in range(3):
            started = time.perf_counter()
            predictor.predict(batch64, batch_size=32)
            batch_runs.append(64 / (time.perf_counter() - started))
        results[f"{name}_batch_images_per_s"] = round(statistics.median(batch_runs), 1)
        naive_started = time.perf_counter()
        for image in batch64[:16]:
            naive_predict_and_cam(predictor.model, predictor.metadata, image)
        results[f"{name}_naive_batch_images_per_s"] = round(16 / (time.perf_counter() - naive_started), 1)

    def compare_once() -> None:
        image = next_image()
        for predictor in predictors.values():
            prediction, _ = predictor.predict_one(image)
            overlay(image, prediction.cam)

    p50, p95 = median_ms(compare_once, args.repeats)
    results["compare_p50_ms"], results["compare_p95_ms"] = round(p50, 1), round(p95, 1)
    if not args.skip_app:
        results.update(app_measurements(paths, args.app_runs))
    results["speedups"] = {
        f"{name}_predict_cam": round(results[f"{name}_naive_predict_cam_p50_ms"] / results[f"{name}_predict_cam_p50_ms"], 1)
        for name in predictors
    } | {
        f"{name}_batch": round(results[f"{name}_batch_images_per_s"] / results[f"{name}_naive_batch_images_per_s"], 1)
        for name in predictors
    }
    results["targets"] = {}
    for key, (sign, bound) in TARGETS.items():
        if key in results:
            value = results[key]
            results["targets"][key] = {
                "value": value,
                "target": f"{sign} {bound}",
                "met": value <= bound if sign == "<=" else value >= bound,
            }

    print(f"{'measurement':<34}{'value':>12}  target")
    for key, value in results.items():
        if isinstance(value, (int, float)):
            target = results["targets"].get(key)
            mark = "" if not target else f"{target['target']:>8} {'met' if target['met'] else 'MISSED'}"
            print(f"{key:<34}{value:>12}  {mark}")
    for key, value in results["speedups"].items():
        print(f"speed-up vs naive {key:<16}{value:>10}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
