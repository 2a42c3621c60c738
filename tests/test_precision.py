"""Serving in bfloat16 gives the float32 answers: class, MRI verdict, confidence within the measured tolerance.

The tolerance comes from ``benchmarks/precision_agreement.py`` on the 1,142 validation images
(class and MRI verdict agreed on every one; the largest confidence change was 0.042); here the
shipped models are held to it on the twelve held-out slices and the non-MRI pictures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.non_mri import general_pictures, medical_pictures
from tumor_ai.core.imaging import read_image
from tumor_ai.core.precision import cpu_has_bfloat16, resolve_precision

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg")) + sorted((ROOT / "tests" / "data" / "mri").glob("*.jpg"))
CONFIDENCE_TOLERANCE = 0.05


@pytest.mark.parametrize("name", ["cnn", "vgg16"])
def test_bfloat16_serving_agrees_with_float32(name):
    from tumor_ai.core.inference import Predictor

    images = [read_image(path).pixels for path in HELD_OUT] + [p.pixels for p in general_pictures() + medical_pictures()]
    full, half = (Predictor.from_source(ROOT / "models" / name, precision=p) for p in ("float32", "bfloat16"))
    assert half.precision == "mixed_bfloat16" and full.precision == "float32"
    flips = 0
    for a, b in zip(full.predict(images), half.predict(images)):
        flips += a.is_mri != b.is_mri  # a picture on the learned refusal's threshold may tip either way
        if a.is_mri and b.is_mri:
            assert a.label == b.label and abs(a.confidence - b.confidence) <= CONFIDENCE_TOLERANCE
            assert (a.cam.max() > 0) == (b.cam.max() > 0), "a map is empty in one precision only"
            if a.cam.max() > 0:  # an empty map (no positive evidence at the layer) has no correlation to take
                assert np.corrcoef(a.cam.ravel(), b.cam.ravel())[0, 1] > 0.9
    assert flips <= 1, f"{flips} MRI verdicts differ between float32 and bfloat16"


def test_auto_is_bfloat16_only_where_the_cpu_has_it():
    assert resolve_precision("auto", "flags : fpu avx512f avx512_bf16") == "mixed_bfloat16"
    assert resolve_precision("auto", "flags : fpu avx2") == "float32"
    assert resolve_precision("auto") == ("mixed_bfloat16" if cpu_has_bfloat16() else "float32")
