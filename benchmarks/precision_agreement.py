"""bfloat16 serving against float32 on the validation split, and what it buys.

    python benchmarks/precision_agreement.py --data ../shared/data/brain-tumor-mri/Training

For each shipped model, reads the validation images of its split (``models/NAME/split.json``),
runs them through the serving path (``Predictor.predict``: test-time flip, Grad-CAM, the
not-an-MRI check) once in float32 and once in bfloat16, and reports how often the class and the
MRI verdict agree, how far the calibrated confidence moves, how alike the Grad-CAMs are, and the
batch throughput of each precision (median of repeated batches of 32, measured in the same run).
``tests/test_precision.py`` holds the tolerances this justifies.
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


def throughput(predictor, images: list[np.ndarray], repeats: int = 5) -> float:
    """Images per second through ``Predictor.predict`` at batch 32 (median of ``repeats``)."""
    batch = (images * (32 // len(images) + 1))[:32]
    predictor.predict(batch, batch_size=32)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict(batch, batch_size=32)
        seconds.append(time.perf_counter() - started)
    return 32 / statistics.median(seconds)


def validation_slices(name: str, data: Path, limit: int | None) -> tuple[Path, list[str], list[np.ndarray]]:
    """A shipped model's folder, the validation paths of its split (the first ``limit``) and their pixels."""
    from tumor_ai.core.imaging import read_image

    folder = ROOT / "models" / name
    paths = json.loads((folder / "split.json").read_text())["validation"][:limit]
    return folder, paths, [read_image(data / path).pixels for path in paths]


def agreement(reference: list, other: list) -> dict[str, float]:
    """How often two runs' predictions of the same images give the same class and the same MRI verdict."""
    pairs = list(zip(reference, other))
    return {
        "class_agreement": round(float(np.mean([a.label == b.label for a, b in pairs])), 4),
        "mri_verdict_agreement": round(float(np.mean([a.is_mri == b.is_mri for a, b in pairs])), 4),
    }


def compare(name: str, data: Path, limit: int | None) -> dict:
    from tumor_ai.core.inference import Predictor

    folder, _, images = validation_slices(name, data, limit)
    runs = {precision: Predictor.from_source(folder, precision=precision) for precision in ("float32", "bfloat16")}
    results = {precision: predictor.predict(images, batch_size=32) for precision, predictor in runs.items()}
    full, half = results["float32"], results["bfloat16"]
    delta = np.array([abs(a.confidence - b.confidence) for a, b in zip(full, half)])
    correlation = [np.corrcoef(a.cam.ravel(), b.cam.ravel())[0, 1] for a, b in zip(full, half) if a.cam.std() and b.cam.std()]
    speed = {precision: throughput(predictor, images[:32]) for precision, predictor in runs.items()}
    return {
        "images": len(images),
        **agreement(full, half),
        "confidence_delta_median": round(float(np.median(delta)), 5),
        "confidence_delta_max": round(float(delta.max()), 4),
        "cam_correlation_median": round(float(np.median(correlation)), 4),
        "cam_correlation_min": round(float(np.min(correlation)), 4),
        "images_per_second_float32": round(speed["float32"], 1),
        "images_per_second_bfloat16": round(speed["bfloat16"], 1),
        "speedup": round(speed["bfloat16"] / speed["float32"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the Training folder the models were split from")
    parser.add_argument("--limit", type=int, help="only the first N validation images (a quick look)")
    parser.add_argument("--out", default="benchmarks/precision_agreement.json", help="JSON results")
    args = parser.parse_args(argv)
    from tumor_ai.core.inference import configure_threads
    from tumor_ai.core.precision import cpu_has_bfloat16

    configure_threads()
    report = {"cpu_has_bfloat16": cpu_has_bfloat16()}
    for name in ("cnn", "vgg16"):
        report[name] = compare(name, Path(args.data), args.limit)
        print(name, json.dumps(report[name]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
