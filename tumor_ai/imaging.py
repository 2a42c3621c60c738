"""Read and validate one input image: the single place that decides what is an image.

Everything a user can upload (JPG, PNG, BMP, TIFF, WebP, GIF, DICOM; grayscale, RGB, RGBA,
palette, CMYK, 16-bit; EXIF-rotated) becomes an RGB ``uint8`` array, or an ``ImageError``
whose message a person can act on. The app, the API and the scripts all call ``read_image``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 40 * 1024 * 1024
MAX_PIXELS = 50_000_000
MIN_SIDE = 32
MAX_ASPECT_RATIO = 4.0
ACCEPTED_FORMATS = {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "MPO"}
ACCEPTED_TEXT = "JPG, PNG, BMP, TIFF, WebP, GIF or DICOM (.dcm)"


class ImageError(ValueError):
    """A problem with an input image, worded for the person who supplied it."""


@dataclass
class LoadedImage:
    """An RGB image ready for preprocessing, with notes on what was done to read it."""

    pixels: np.ndarray
    name: str = "image"
    notes: list[str] = field(default_factory=list)


def read_image(source: str | Path | bytes, name: str | None = None) -> LoadedImage:
    """Decode a path or raw bytes into RGB ``uint8``; raise ``ImageError`` with a clear reason."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.name
        if not path.is_file():
            raise ImageError(f"{name}: file not found.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(_too_big_message(name, size))
        data = path.read_bytes()
    else:
        data = bytes(source)
        name = name or "image"
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_too_big_message(name, len(data)))
    if not data:
        raise ImageError(f"{name}: the file is empty.")
    if _looks_like_dicom(data, name):
        return _read_dicom(data, name)
    return _read_raster(data, name)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode to RGB ``uint8``: transparency on black, high bit depths stretched to 0..255."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _gray_to_rgb(_stretch_to_uint8(np.asarray(image, dtype=np.float64)))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(black, rgba).convert("RGB"))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def _too_big_message(name: str, size: int) -> str:
    return (
        f"{name}: the file is {size / 2**20:.1f} MB; the limit is "
        f"{MAX_FILE_BYTES / 2**20:.0f} MB. Export a smaller copy of the slice."
    )


def _looks_like_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _describe_non_image(data: bytes) -> str:
    head = data[:8]
    if head.startswith(b"%PDF"):
        return "it is a PDF document, not an image"
    if head.startswith((b"\x7fELF", b"MZ", b"#!")):
        return "it is a program, not an image"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (the Batch tab accepts zips)"
    try:
        data[:2048].decode("utf-8")
        return "it is a text file, not an image"
    except UnicodeDecodeError:
        return "its content is not an image format we can read"


def _read_raster(data: bytes, name: str) -> LoadedImage:
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                image = Image.open(io.BytesIO(data))
                fmt = image.format or "unknown"
                if fmt not in ACCEPTED_FORMATS:
                    raise ImageError(f"{name}: {fmt} images are not accepted; use {ACCEPTED_TEXT}.")
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    image.seek(0)
                    kind = "animated image" if fmt in ("GIF", "WEBP", "PNG") else "multi-page file"
                    notes.append(f"{kind} with {frames} frames: the first frame was used")
                image.load()
                image = ImageOps.exif_transpose(image)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: the image has too many pixels (limit {MAX_PIXELS / 1e6:.0f} megapixels); "
            "it may be a decompression bomb. Export a smaller copy of the slice."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: this is not an image we can read: {_describe_non_image(data)}. Upload a {ACCEPTED_TEXT} file."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name}: the image is truncated or corrupt and cannot be decoded ({type(error).__name__}).") from None
    if image.mode == "CMYK":
        notes.append("CMYK image converted to RGB")
    pixels = to_rgb(image)
    _check_shape(pixels, name)
    return LoadedImage(pixels=pixels, name=name, notes=notes)


def _check_shape(pixels: np.ndarray, name: str) -> None:
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{name}: the image is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed.")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(
            f"{name}: the image is {width}x{height} pixels, an aspect ratio of {ratio:.1f}:1; "
            "an MRI slice is close to square. Crop it to the slice."
        )


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _read_dicom(data: bytes, name: str) -> LoadedImage:
    """An MR slice from DICOM: modality rescale, the file's own window, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    notes: list[str] = []
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        pixels = dataset.pixel_array
    except (InvalidDicomError, AttributeError, KeyError, TypeError, ValueError, OSError, EOFError) as error:
        raise ImageError(f"{name}: this DICOM file holds no pixel data we can decode ({type(error).__name__}).") from None
    except RuntimeError as error:  # pydicom: compressed transfer syntax without a decoder
        raise ImageError(f"{name}: this DICOM file's compression is not supported ({error}).") from None
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    is_color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") or (
        pixels.ndim == (4 if frames > 1 else 3) and pixels.shape[-1] == 3
    )
    if frames > 1:
        middle = frames // 2
        pixels = pixels[middle]
        notes.append(f"multi-frame DICOM with {frames} frames: the middle frame ({middle + 1}) was used")
    if is_color:
        rgb = _stretch_to_uint8(pixels.astype(np.float64)) if pixels.dtype != np.uint8 else pixels
        _check_shape(rgb, name)
        return LoadedImage(pixels=np.ascontiguousarray(rgb), name=name, notes=notes)
    values = pixels.astype(np.float64)
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    values = values * slope + intercept
    window = _dicom_window(dataset)
    if window is not None:
        center, width = window
        low, high = center - width / 2, center + width / 2
        values = np.clip(values, low, high)
        gray = np.round((values - low) * (255.0 / max(high - low, 1e-6))).astype(np.uint8)
        notes.append(f"DICOM window centre {center:g}, width {width:g} applied")
    else:
        gray = _stretch_to_uint8(values)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
        notes.append("MONOCHROME1 DICOM inverted to MONOCHROME2")
    rgb = _gray_to_rgb(gray)
    _check_shape(rgb, name)
    return LoadedImage(pixels=rgb, name=name, notes=notes)


def _dicom_window(dataset) -> tuple[float, float] | None:
    center = getattr(dataset, "WindowCenter", None)
    width = getattr(dataset, "WindowWidth", None)
    if center is None or width is None:
        return None
    try:
        center_value, width_value = _first_value(center), _first_value(width)
    except (TypeError, ValueError, IndexError):
        return None
    return (center_value, width_value) if width_value > 0 else None


def _first_value(value) -> float:
    """DICOM window tags may hold several values (MultiValue); the first is the default."""
    if isinstance(value, (str, bytes, int, float)):
        return float(value)
    return float(value[0])
