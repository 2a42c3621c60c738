"""The colour map and the overlay (tumor_ai.core.explain): drawing only."""

from __future__ import annotations

import numpy as np

from tumor_ai.core.explain import focus_region, heatmap, jet, overlay


def test_overlay_and_heatmap_keep_input_resolution():
    pixels = np.full((301, 199, 3), 128, np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[1, 6] = 1.0
    blended = overlay(pixels, cam, opacity=0.5)
    assert blended.shape == pixels.shape and blended.dtype == np.uint8
    assert heatmap(cam, (301, 199)).shape == (301, 199, 3)
    np.testing.assert_array_equal(overlay(pixels, cam, opacity=0.0), pixels)
    assert not np.array_equal(blended, pixels)
    assert "upper right" in focus_region(cam)


def test_jet_runs_blue_to_red():
    low, high = jet(np.array([0.0, 1.0]))
    assert low[2] > low[0] and high[0] > high[2]
