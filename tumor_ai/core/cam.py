"""Class-activation maps from one layer's features and the class score's gradients.

Every method here needs only what one forward and one backward pass give (the layer's
activations ``A`` and ``dy/dA``), so any of them can be served inside the model's
``tf.function`` (``tumor_ai.core.inference``) at the same cost. They differ in how channels are
weighted:

- ``grad_cam`` (Selvaraju et al., 2017): each channel by its mean gradient.
- ``grad_cam_plus_plus`` (Chattopadhay et al., 2018): by the positive gradients, with per-position
  weights that favour several separate objects.
- ``hires_cam`` (Draelos & Carin, 2020): gradient times activation per position, no averaging; the
  map is faithful to what the score reads through global average pooling.
- ``layer_cam`` (Jiang et al., 2021): positive gradient times activation per position; suits
  earlier, finer layers.

Score-CAM (one forward pass per channel) is measured by ``training.localise`` but not served: it
costs hundreds of passes per slice. The model's metadata names the method and the layer
(``cam_method``, ``cam_layer``), chosen by ``tumor-ai localise`` on held-out images.

``upsample`` and ``place_in_frame`` put a map computed on the model's input back over the whole
upload; inference and the localisation study use them, the page only draws what they return
(``tumor_ai.core.explain``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

DEFAULT_METHOD = "grad_cam"
METHOD_NAMES = {
    "grad_cam": "Grad-CAM",
    "grad_cam_plus_plus": "Grad-CAM++",
    "hires_cam": "HiResCAM",
    "layer_cam": "LayerCAM",
}


def _scaled(cam):
    """Keep the positive part and scale each map to 0..1 (a flat map stays zero)."""
    from keras import ops

    cam = ops.relu(cam)
    return cam / (ops.max(cam, axis=(1, 2), keepdims=True) + 1e-8)


def grad_cam(features, gradients):
    """Grad-CAM maps (batch, h, w) in 0..1: channels weighted by their mean gradient."""
    from keras import ops

    weights = ops.mean(gradients, axis=(1, 2), keepdims=True)
    return _scaled(ops.sum(weights * features, axis=-1))


def grad_cam_plus_plus(features, gradients):
    """Grad-CAM++ maps: positive gradients weighted per position (the usual closed form for a linear score)."""
    from keras import ops

    squared = gradients**2
    denominator = 2.0 * squared + ops.sum(features, axis=(1, 2), keepdims=True) * squared * gradients
    alpha = squared / ops.where(ops.abs(denominator) > 1e-12, denominator, ops.ones_like(denominator))
    weights = ops.sum(alpha * ops.relu(gradients), axis=(1, 2), keepdims=True)
    return _scaled(ops.sum(weights * features, axis=-1))


def hires_cam(features, gradients):
    """HiResCAM maps: the element-wise product of gradient and activation, summed over channels."""
    from keras import ops

    return _scaled(ops.sum(gradients * features, axis=-1))


def layer_cam(features, gradients):
    """LayerCAM maps: positive gradients times activations, summed over channels."""
    from keras import ops

    return _scaled(ops.sum(ops.relu(gradients) * features, axis=-1))


CAM_METHODS: dict[str, Callable] = {
    "grad_cam": grad_cam,
    "grad_cam_plus_plus": grad_cam_plus_plus,
    "hires_cam": hires_cam,
    "layer_cam": layer_cam,
}


def method_name(method: str) -> str:
    """The name a person reads for a metadata ``cam_method`` ("Grad-CAM++"); an unknown key is shown as it is."""
    return METHOD_NAMES.get(method, method)


def cam_function(method: str) -> Callable:
    """The map function a metadata ``cam_method`` names; an unknown name is refused in one sentence."""
    try:
        return CAM_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown CAM method '{method}'; known: {sorted(CAM_METHODS)}") from None


# The map's geometry: inference and the localisation study place a map computed on the model's input
# (a crop, at the layer's grid) over the whole upload.


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A coarse CAM (h, w) in 0..1 to ``size`` = (height, width), bilinear."""
    height, width = size
    image = Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(image), 0.0, 1.0)


def place_in_frame(cam: np.ndarray, frame: tuple[int, int, int, int], image_shape: tuple[int, int], grid: int = 64) -> np.ndarray:
    """A CAM computed on a crop, placed where that crop lies in the whole image (zero elsewhere).

    ``frame`` is ``(top, left, height, width)`` of the model's input in image pixels (it may reach
    past the edges). The result covers the whole image at ``grid`` cells on its longer side, so the
    overlay, the heatmap and the words about where the evidence lies all refer to the upload.
    """
    height, width = image_shape
    if tuple(frame) == (0, 0, height, width):
        return cam
    scale = grid / max(height, width)
    canvas = np.zeros((max(1, round(height * scale)), max(1, round(width * scale))), np.float32)
    top, left = round(frame[0] * scale), round(frame[1] * scale)
    placed = upsample(cam, (max(1, round(frame[2] * scale)), max(1, round(frame[3] * scale))))
    rows = slice(max(top, 0), min(top + placed.shape[0], canvas.shape[0]))
    cols = slice(max(left, 0), min(left + placed.shape[1], canvas.shape[1]))
    if rows.stop > rows.start and cols.stop > cols.start:
        canvas[rows, cols] = placed[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
    return canvas
