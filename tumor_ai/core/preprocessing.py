"""Turn an RGB image into exactly what a model was trained on.

The crop, the resize and the normalisation a model needs are named in its metadata
(``crop``, ``input_size`` and ``preprocessing``); training and serving both call
``model_input``, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

Frame = tuple[int, int, int, int]  # (top, left, height, width) in the original image; may reach past its edges

CROPS = ("none", "head")
HEAD_THRESHOLD = 0.1  # of the 99th-percentile brightness: below it is background
HEAD_MARGIN = 0.04  # of the head's size, added on each side
MIN_HEAD_FRACTION = 0.2  # a head narrower or shorter than this share of the image is not trusted
ANALYSIS_SIDE = 256  # the head is found on a copy this size, so big uploads cost no more


def rescale_unit(batch):
    """0..255 float RGB to 0..1, for models trained from scratch (numpy array or tensor)."""
    return batch / 255.0


def vgg16_caffe(batch):
    """VGG16's own ``preprocess_input`` (caffe: RGB to BGR, ImageNet means subtracted), numpy or tensor."""
    from keras.applications.vgg16 import preprocess_input

    return preprocess_input(batch)


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, what PIL's "L" mode uses
TISSUE_LEVEL = 0.5  # where the head's mean brightness lands after ``luminance``
LUMINANCE_MAX = 3.0  # brighter than six times the head's mean is clipped


def luminance(batch):
    """0..255 RGB to one channel of luminance, divided by the head's mean brightness (numpy or tensor).

    What is the same across the dataset's source collections: single-channel JPGs from one,
    RGB JPGs with chroma noise from the others, each scanner with its own brightness. Colour
    and overall level would let a network sort by collection, so it gets neither: the head
    (pixels above a tenth of the image's brightest) is brought to a mean of ``TISSUE_LEVEL``,
    and black stays black, so the padding of a head crop stays zero.

    A numpy batch (serving, evaluation) is computed in numpy, a tensor (the training pipeline) with
    ``keras.ops``: the same arithmetic, in float32 both, so the two agree to float rounding, and a
    request pays for no TensorFlow op dispatch (a dozen eager ops cost more than the arithmetic).
    """
    if isinstance(batch, np.ndarray):
        return _luminance_numpy(batch)
    from keras import ops

    gray = ops.sum(ops.cast(batch, "float32") * ops.convert_to_tensor(LUMA, "float32"), axis=-1, keepdims=True)
    brightest = ops.max(gray, axis=(1, 2, 3), keepdims=True)
    head = ops.cast(gray > 0.1 * brightest, "float32")
    mean = ops.sum(gray * head, axis=(1, 2, 3), keepdims=True) / ops.maximum(ops.sum(head, axis=(1, 2, 3), keepdims=True), 1.0)
    return ops.clip(gray * (TISSUE_LEVEL / ops.maximum(mean, 1.0)), 0.0, LUMINANCE_MAX)


def _luminance_numpy(batch: np.ndarray) -> np.ndarray:
    """``luminance`` of a numpy batch (N, H, W, 3) in float32, channel by channel: no float copy of the RGB batch."""
    weights = np.asarray(LUMA, np.float32)
    gray = batch[..., 0].astype(np.float32) * weights[0]
    gray += batch[..., 1].astype(np.float32) * weights[1]
    gray += batch[..., 2].astype(np.float32) * weights[2]
    gray = gray[..., None]
    brightest = gray.max(axis=(1, 2, 3), keepdims=True)
    head = gray > np.float32(0.1) * brightest
    total = np.sum(gray, axis=(1, 2, 3), keepdims=True, where=head, dtype=np.float32)
    mean = total / np.maximum(np.sum(head, axis=(1, 2, 3), keepdims=True), 1).astype(np.float32)
    gray *= np.float32(TISSUE_LEVEL) / np.maximum(mean, np.float32(1.0))
    return np.clip(gray, np.float32(0.0), np.float32(LUMINANCE_MAX), out=gray)


VGG16_HEAD_LEVEL = 160.0  # luminance 0.5 (the head's mean) to 80 of 255: the dataset's median head brightness


def vgg16_luminance(batch):
    """``luminance`` (the head's mean brightness fixed, no colour) handed to VGG16 as the grey RGB it expects.

    ImageNet filters want three channels in the 0..255 range, so the one channel is scaled to put
    the head's mean at the dataset's median brightness, repeated, then given VGG16's own
    ``preprocess_input``. Level and colour no longer tell the source collections apart. A numpy
    batch is computed in numpy (as ``luminance``): the grey channel minus each ImageNet mean, in
    the BGR order ``preprocess_input`` gives.
    """
    if isinstance(batch, np.ndarray):
        gray = np.clip(_luminance_numpy(batch)[..., 0] * np.float32(VGG16_HEAD_LEVEL), np.float32(0.0), np.float32(255.0))
        return np.stack([gray - np.float32(mean) for mean in CAFFE_BGR_MEANS], axis=-1)
    from keras import ops

    gray = ops.clip(luminance(batch) * VGG16_HEAD_LEVEL, 0.0, 255.0)
    return vgg16_caffe(ops.concatenate([gray, gray, gray], axis=-1))


CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)  # what keras.applications.vgg16.preprocess_input subtracts, in BGR order


NORMALIZERS: dict[str, Callable] = {
    "rescale_unit": rescale_unit,
    "vgg16": vgg16_caffe,
    "luminance": luminance,
    "vgg16_luminance": vgg16_luminance,
}
CHANNELS = {"luminance": 1}  # what a normalisation hands the network; 3 unless named here


def channels(preprocessing: str) -> int:
    """How many channels the network's input has under this normalisation."""
    return CHANNELS.get(preprocessing, 3)


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB ``uint8`` (H, W, 3) to ``size`` = (height, width), antialiased bilinear."""
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))


def foreground(gray: np.ndarray) -> np.ndarray:
    """Pixels brighter than ``HEAD_THRESHOLD`` of the 99th-percentile brightness (at least 8), specks opened away."""
    from scipy import ndimage

    level = max(8.0, HEAD_THRESHOLD * float(np.percentile(gray, 99)))
    return ndimage.binary_opening(gray > level, iterations=2)


def head_frame(pixels: np.ndarray) -> Frame:
    """The square around the head: threshold, largest connected component, a margin, then squared.

    MRI slices sit on black backgrounds of varying size, so without this the model spends many of
    its pixels on nothing and sees heads at many scales. The square keeps the aspect ratio; where
    it reaches past the image, ``crop_frame`` pads with black. Returns the whole image when no
    head-sized bright region is found (a blank or a full-bleed picture).
    """
    from scipy import ndimage

    height, width = pixels.shape[:2]
    whole = (0, 0, height, width)
    scale = max(height, width) / ANALYSIS_SIDE
    gray = Image.fromarray(pixels).convert("L")
    if scale > 1:
        gray = gray.resize((max(1, round(width / scale)), max(1, round(height / scale))), Image.Resampling.BOX)
    else:
        scale = 1.0
    mask = foreground(np.asarray(gray, dtype=np.float32))
    components, count = ndimage.label(mask)
    if count == 0:
        return whole
    largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
    rows = np.flatnonzero((components == largest).any(axis=1))
    cols = np.flatnonzero((components == largest).any(axis=0))
    top, bottom = rows[0] * scale, (rows[-1] + 1) * scale
    left, right = cols[0] * scale, (cols[-1] + 1) * scale
    if bottom - top < MIN_HEAD_FRACTION * height or right - left < MIN_HEAD_FRACTION * width:
        return whole
    side = max(bottom - top, right - left) * (1 + 2 * HEAD_MARGIN)
    centre_row, centre_col = (top + bottom) / 2, (left + right) / 2
    side_px = max(1, round(side))
    return (round(centre_row - side / 2), round(centre_col - side / 2), side_px, side_px)


def crop_frame(pixels: np.ndarray, frame: Frame) -> np.ndarray:
    """The pixels inside ``frame``, padded with black where the frame reaches past the image."""
    top, left, height, width = frame
    image_height, image_width = pixels.shape[:2]
    if (top, left, height, width) == (0, 0, image_height, image_width):
        return pixels
    out = np.zeros((height, width, pixels.shape[2]), dtype=pixels.dtype)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + height, image_height), min(left + width, image_width)
    if src_bottom > src_top and src_right > src_left:
        out[src_top - top : src_bottom - top, src_left - left : src_right - left] = pixels[src_top:src_bottom, src_left:src_right]
    return out


def model_input(pixels: np.ndarray, size: tuple[int, int], crop: str = "none") -> tuple[np.ndarray, Frame]:
    """RGB ``uint8`` image to the model's ``uint8`` input, and the frame of the original it covers.

    The frame lets Grad-CAM be drawn back onto the uploaded image in the right place.
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop '{crop}'; known: {list(CROPS)}")
    frame = head_frame(pixels) if crop == "head" else (0, 0, *pixels.shape[:2])
    return resize(crop_frame(pixels, frame), size), frame


def normalize(batch: np.ndarray, name: str) -> np.ndarray:
    """Apply the normalisation a model's metadata names to a batch of 0..255 RGB (float32 out)."""
    try:
        return NORMALIZERS[name](np.asarray(batch, dtype=np.float32))
    except KeyError:
        raise ValueError(f"unknown preprocessing '{name}'; known: {sorted(NORMALIZERS)}") from None
