"""What a person waits for: the real app through ``gradio_client`` against a bare-app floor, and where the time goes.

    python benchmarks/e2e_latency.py

In one run:

* start-up: ``python app.py`` from process start to the first HTTP 200 (median of ``--starts``);
* latency: ``/predict`` (each model), ``/compare`` and ``/batch`` (4 images) through ``gradio_client``
  on loopback, p50 and p95 over the 12 held-out slices (examples/ and tests/data/mri/), each
  slice sent ``--rounds`` times; the floor app (``benchmarks/floor_app.py``: same inputs and
  outputs, no work) timed the same way, and the overhead above it;
* a breakdown of one Predict and one Compare inside the process, by stage: decode, preprocess,
  model (forward, test-time flip, Grad-CAM), the not-an-MRI check, placing the CAM, drawing
  the overlay and heatmap at display size, and encoding them (JPEG);
* in-process totals of whole requests (``handlers.predict`` and ``handlers.compare`` on a fresh slice: decode to
  the files written), the part of the API time the app itself spends;
* the machine: the CPU's name, its flags that matter here (AVX2, AVX512, VNNI, bfloat16, AMX), the cores, the
  precision ``--precision auto`` serves in, and the load average before and after, since other jobs on the same
  cores move every figure.

Results go to ``--out`` (JSON) and a table on stdout. Machines are noisy: every figure is a
median, and the floor is measured in the same run as the app.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.benchmark import free_port, start_app  # noqa: E402

SLICES = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg")) + sorted((ROOT / "tests" / "data" / "mri").glob("*.jpg"))
TARGETS = {"predict_cnn_over_floor_ms": 40, "compare_over_floor_ms": 150, "start_to_first_200_s": 4.0}


FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")  # what decides the speed of the passes


def machine() -> dict:
    """The CPU the figures were taken on: its name, the flags above it has, the cores, and the precision served."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    flags = set(lines.get("flags", "").split())
    policy, engine = served_as()
    return {
        "cpu": lines.get("model name", "unknown"),
        "flags": [flag for flag in FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "precision_served": policy,
        "engine_served": engine,
        # oneDNN (TensorFlow's kernels) capped at an older instruction set: how a CPU without AVX-512 runs them
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "all"),
    }


def served_as() -> tuple[str, str]:
    """The precision and engine ``python app.py`` serves in here: its defaults, or ``TUMOR_AI_PRECISION`` and
    ``TUMOR_AI_ENGINE`` where set (the app reads the same variables), so the in-process figures match the API's."""
    from tumor_ai.core.engine import resolve_engine
    from tumor_ai.core.precision import resolve_precision

    policy = resolve_precision(os.environ.get("TUMOR_AI_PRECISION", "auto"))
    return policy, resolve_engine(os.environ.get("TUMOR_AI_ENGINE", "auto"), policy)


def served_predictor(name: str):
    """The shipped model ``name`` as the app serves it here (``served_as``)."""
    from tumor_ai.core.inference import Predictor

    policy, engine = served_as()
    return Predictor.from_source(
        ROOT / "models" / name, precision="bfloat16" if policy != "float32" else "float32", engine=engine
    )


def load_average() -> list[float]:
    """``uptime``'s 1-, 5- and 15-minute load: above the core count, other jobs share the CPU with the benchmark."""
    return [round(value, 2) for value in os.getloadavg()]


def fresh_slice() -> None:
    """Forget the not-an-MRI check's statistics of slices seen (where the code has that cache), so every timed
    request measures a slice the app has not seen, as an upload is."""
    from tumor_ai.core import mri_check

    cache = getattr(mri_check, "_STATISTICS_CACHE", None)
    if cache is not None:
        cache.clear()


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(samples, 50)), 1), "p95": round(float(np.percentile(samples, 95)), 1)}


def timed_calls(call, rounds: int) -> list[float]:
    """Milliseconds of ``call(path)`` for every slice, ``rounds`` times, after one warm-up call."""
    call(SLICES[0])
    samples = []
    for _ in range(rounds):
        for path in SLICES:
            started = time.perf_counter()
            call(path)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def client_for(port: int):
    from gradio_client import Client

    return Client(f"http://127.0.0.1:{port}/", verbose=False)


def endpoint_latencies(port: int, rounds: int, floor: bool) -> dict[str, dict]:
    from gradio_client import handle_file

    client = client_for(port)
    results = {}
    for model in ("cnn", "vgg16"):
        results[f"predict_{model}"] = percentiles(
            timed_calls(lambda path, m=model: client.predict(handle_file(str(path)), m, 0.45, "top", api_name="/predict"), rounds)
        )
    results["compare"] = percentiles(
        timed_calls(lambda path: client.predict(handle_file(str(path)), 0.45, api_name="/compare"), rounds)
    )
    if not floor:
        four = [handle_file(str(path)) for path in SLICES[:4]]
        results["batch_4"] = percentiles(timed_calls(lambda _: client.predict(four, 0.45, api_name="/batch"), 1))
    return results


def stage_breakdown(rounds: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per stage of the Predict handler's work, per model, inside one process."""
    from tumor_ai.app.handlers import cache_picture
    from tumor_ai.core import explain
    from tumor_ai.core.cam import place_in_frame
    from tumor_ai.core.explain import display_copy, heatmap, overlay
    from tumor_ai.core.imaging import read_image
    from tumor_ai.core.inference import configure_threads

    configure_threads()
    breakdown = {}
    for name in ("cnn", "vgg16"):
        predictor = served_predictor(name)
        stages: dict[str, list[float]] = {}

        def clock(stage: str, started: float, stages: dict = stages) -> float:
            now = time.perf_counter()
            stages.setdefault(stage, []).append((now - started) * 1000)
            return now

        for index in range(rounds * len(SLICES) + 1):
            path = SLICES[index % len(SLICES)]
            fresh_slice()
            now = time.perf_counter()
            image = read_image(path)
            now = clock("decode", now)
            batch, frames = predictor.inputs([image.pixels])
            now = clock("preprocess", now)
            outputs = predictor.run(batch)
            now = clock("model_and_cam", now)
            predictor.mri_check.score([image.pixels], outputs["embedding"])
            now = clock("mri_check", now)
            cam = place_in_frame(outputs["cam"][0], frames[0], image.pixels.shape[:2])
            now = clock("place_cam", now)
            display = display_copy(image.pixels)
            if hasattr(explain, "coloured"):  # the map coloured once for both pictures, as the reader draws them
                colours = explain.coloured(cam, display.shape[:2])
                pictures = overlay(display, cam, 0.45, colours), heatmap(cam, display.shape[:2], colours)
            else:
                pictures = overlay(display, cam, 0.45), heatmap(cam, display.shape[:2])
            now = clock("draw", now)
            for picture, kind in zip(pictures, ("overlay.jpg", "heatmap.jpg")):
                cache_picture(picture, kind)
            clock("encode", now)
        breakdown[name] = {stage: round(statistics.median(ms[1:]), 1) for stage, ms in stages.items()}
        breakdown[name]["total"] = round(sum(breakdown[name].values()), 1)
    return breakdown


def request_totals(rounds: int) -> dict[str, float]:
    """Median milliseconds of whole requests inside the process, through the handlers the API calls: a Predict per
    model and a Compare, each on a slice the app has not seen (decode, models, check, drawing, files written)."""
    from tumor_ai.app import handlers

    predictors = {name: served_predictor(name) for name in ("cnn", "vgg16")}
    calls = {
        f"predict_{name}": lambda path, name=name: handlers.predict(predictors, {"path": str(path)}, name, 0.45, "top", None)
        for name in predictors
    }
    calls["compare"] = lambda path: handlers.compare(predictors, {"path": str(path)}, 0.45, None)
    totals = {}
    for endpoint, call in calls.items():
        samples = []
        for index in range(rounds * len(SLICES) + 1):
            fresh_slice()
            started = time.perf_counter()
            call(SLICES[index % len(SLICES)])
            samples.append((time.perf_counter() - started) * 1000)
        totals[endpoint] = round(statistics.median(samples[1:]), 1)
    return totals


def start_floor(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "floor_app.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while True:
        try:
            client_for(port)
            return process
        except Exception:  # noqa: BLE001 - not up yet
            if time.time() > deadline or process.poll() is not None:
                raise SystemExit("the floor app did not start") from None
            time.sleep(0.3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="times each of the 12 slices is sent (default 2)")
    parser.add_argument("--starts", type=int, default=3, help="cold starts to time (default 3)")
    parser.add_argument("--out", default="benchmarks/e2e_latency.json", help="JSON results")
    args = parser.parse_args(argv)

    load_before = load_average()
    starts = []
    for _ in range(args.starts):
        process, seconds = start_app(free_port())
        starts.append(seconds)
        process.terminate()
        process.wait(timeout=30)
    port, floor_port = free_port(), free_port()
    app, _ = start_app(port)
    floor = start_floor(floor_port)
    try:
        measured = {"app": endpoint_latencies(port, args.rounds, floor=False)}
        measured["floor"] = endpoint_latencies(floor_port, args.rounds, floor=True)
    finally:
        for process in (app, floor):
            process.terminate()
            process.wait(timeout=30)
    overhead = {
        endpoint: round(measured["app"][endpoint]["p50"] - measured["floor"][endpoint]["p50"], 1)
        for endpoint in measured["floor"]
    }
    stages = stage_breakdown(args.rounds)
    totals = request_totals(args.rounds)
    result = {
        "machine": machine() | {"load_before": load_before, "load_after": load_average()},
        "start_to_first_200_s": round(statistics.median(starts), 2),
        "start_runs_s": [round(s, 2) for s in starts],
        "latency_ms": measured,
        "overhead_p50_ms": overhead,
        "stages_ms": stages,
        "request_ms_in_process": totals,
        "targets": {
            "predict_cnn_over_floor_ms": {"target": TARGETS["predict_cnn_over_floor_ms"], "measured": overhead["predict_cnn"]},
            "compare_over_floor_ms": {"target": TARGETS["compare_over_floor_ms"], "measured": overhead["compare"]},
            "start_to_first_200_s": {"target": TARGETS["start_to_first_200_s"], "measured": round(statistics.median(starts), 2)},
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
