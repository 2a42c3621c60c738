"""The onnx engine against TensorFlow on the validation split, in float32, and what it buys.

    python benchmarks/engine_agreement.py --data ../shared/data/brain-tumor-mri/Training

For each shipped model, reads the validation images of its split (``models/NAME/split.json``) and runs them through
the serving path (``Predictor.predict``: test-time flip where the metadata has it, the map, the not-an-MRI check)
once with TensorFlow and once with ONNX Runtime up to the CAM layer (``tumor_ai.core.engine``), both in float32. It
reports each engine's accuracy, how often the class, the MRI verdict and the map's peak agree, how far the
confidence and the map move, and the time of one answer's model pass (``Predictor.run`` on one prepared slice:
forward, flip and map; median of ``--repeats``) and of batches of 32 through ``predict``, measured in the same run,
beside the CPU's name and flags. ``tests/test_engine.py`` holds the shipped models to the same classes and map peaks
on the example slices.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.e2e_latency import load_average, machine  # noqa: E402
from benchmarks.precision_agreement import agreement, throughput, validation_slices  # noqa: E402


def answer_ms(predictor, image: np.ndarray, repeats: int) -> float:
    """Median milliseconds of one answer's model pass on one prepared slice (what a Predict waits for)."""
    batch = predictor.prepare([image])
    predictor.run(batch)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.run(batch)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def peak(cam: np.ndarray) -> tuple[int, int]:
    return tuple(int(i) for i in np.unravel_index(np.argmax(cam), cam.shape))


def compare(name: str, data: Path, limit: int | None, repeats: int) -> dict:
    from tumor_ai.core.inference import Predictor

    folder, paths, images = validation_slices(name, data, limit)
    truth = [Path(path).parent.name for path in paths]
    engines = {engine: Predictor.from_source(folder, precision="float32", engine=engine) for engine in ("tensorflow", "onnx")}
    results = {engine: predictor.predict(images, batch_size=32) for engine, predictor in engines.items()}
    reference, served = results["tensorflow"], results["onnx"]
    delta = np.array([abs(a.confidence - b.confidence) for a, b in zip(reference, served)])
    cam_delta = np.array([float(np.abs(a.cam - b.cam).max()) for a, b in zip(reference, served)])
    accuracy = {engine: float(np.mean([p.label == t for p, t in zip(answers, truth)])) for engine, answers in results.items()}
    answer = {engine: answer_ms(predictor, images[0], repeats) for engine, predictor in engines.items()}
    batch = {engine: throughput(predictor, images[:32]) for engine, predictor in engines.items()}
    return {
        "images": len(images),
        "accuracy_tensorflow": round(accuracy["tensorflow"], 4),
        "accuracy_onnx": round(accuracy["onnx"], 4),
        **agreement(reference, served),
        "map_peak_agreement": round(float(np.mean([peak(a.cam) == peak(b.cam) for a, b in zip(reference, served)])), 4),
        "confidence_delta_max": float(f"{delta.max():.2g}"),
        "map_delta_max": float(f"{cam_delta.max():.2g}"),
        "answer_ms_tensorflow": round(answer["tensorflow"], 1),
        "answer_ms_onnx": round(answer["onnx"], 1),
        "answer_speedup": round(answer["tensorflow"] / answer["onnx"], 2),
        "images_per_second_tensorflow": round(batch["tensorflow"], 1),
        "images_per_second_onnx": round(batch["onnx"], 1),
        "batch_speedup": round(batch["onnx"] / batch["tensorflow"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the Training folder the models were split from")
    parser.add_argument("--limit", type=int, help="only the first N validation images (a quick look)")
    parser.add_argument("--repeats", type=int, default=40, help="timed passes of one slice per engine (default 40)")
    parser.add_argument("--out", default="benchmarks/engine_agreement.json", help="JSON results")
    args = parser.parse_args(argv)
    from tumor_ai.core.inference import configure_threads

    configure_threads()
    cpu = {key: value for key, value in machine().items() if key not in ("precision_served", "engine_served")}
    report = {"machine": cpu | {"precision": "float32", "load_before": load_average()}}
    for name in ("cnn", "vgg16"):
        report[name] = compare(name, Path(args.data), args.limit, args.repeats)
        print(name, json.dumps(report[name]), flush=True)
    report["machine"]["load_after"] = load_average()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
