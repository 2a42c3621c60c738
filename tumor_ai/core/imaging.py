"""Read and validate one input image: the single place that decides what is an image.

Everything a user can upload (JPG, PNG, BMP, TIFF, WebP, GIF, DICOM; grayscale, RGB, RGBA,
palette, CMYK, 16-bit; EXIF-rotated) becomes an RGB ``uint8`` array, or an ``ImageError``
whose message a person can act on. The app, the API and the scripts all call ``read_image``.

Sizes are checked from the header before any pixel is decoded, and an image larger than
``DECODE_SIDE`` is decoded straight to that size (JPEG's DCT scaling, then PIL's reducing
resize), so a 7000x7000 upload costs what a 1024x1024 one does: the models read 224-256 px and
the app draws at most 768 px. Formats with no reduced decode (PNG, TIFF, WebP, GIF, BMP) are
decoded whole, so large ones wait for a share of ``DECODE_BUDGET``: however many arrive at once,
about one 50-megapixel image is in memory at a time. A DICOM file must be an MR image of the head.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 40 * 1024 * 1024
MAX_PIXELS = 50_000_000
MIN_SIDE = 32
MAX_ASPECT_RATIO = 4.0
DECODE_SIDE = 1024  # larger images are decoded to this many pixels on their longer side
DECODE_BUDGET = MAX_PIXELS + 4 * DECODE_SIDE**2  # pixels being fully decoded at once, across threads
_decoding = threading.Condition()
_decoding_pixels = 0
HEAD_PARTS = {"HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD NECK", "NECKHEAD", "CEREBRUM"}
MODALITY_NAMES = {
    "CT": "computed tomography",
    "CR": "computed radiography, an X-ray",
    "DX": "digital radiography, an X-ray",
    "MG": "mammography",
    "NM": "nuclear medicine",
    "PT": "PET",
    "US": "ultrasound",
    "XA": "X-ray angiography",
    "OT": "other, e.g. a secondary capture",
    "SC": "secondary capture",
    "SEG": "a segmentation",
    "SR": "a structured report",
    "RTDOSE": "a radiotherapy dose",
}
ACCEPTED_FORMATS = {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "MPO"}
ACCEPTED_TEXT = "JPG, PNG, BMP, TIFF, WebP, GIF or DICOM (.dcm)"
DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
IMAGE_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES  # the names a folder walk or a zip treats as images


class ImageError(ValueError):
    """A problem with an input image, worded for the person who supplied it."""


def pixel_key(pixels: np.ndarray) -> str:
    """A slice's content as a key: the decoded pixels and their shape, not the file's name or bytes (SHA-1, which
    CPUs hash in hardware: half a millisecond for a 512-px slice)."""
    digest = hashlib.sha1(np.ascontiguousarray(pixels).data)
    digest.update(repr(pixels.shape).encode())
    return digest.hexdigest()


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
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ImageError(_too_big_message(name, size))
            data = path.read_bytes()
        except OSError as error:  # no read permission, a vanished file, an I/O error
            raise ImageError(f"{name}: the file cannot be read ({error.strerror or type(error).__name__}).") from None
    else:
        data = bytes(source)
        name = name or "image"
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_too_big_message(name, len(data)))
    if not data:
        raise ImageError(f"{name}: the file is empty.")
    try:
        if _looks_like_dicom(data, name):
            return _read_dicom(data, name)
        return _read_raster(data, name)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{name}: the image needs more memory to decode than this app can give it.") from None
    except Exception as error:  # noqa: BLE001 (a decoder's own failure, of any kind, costs this file only)
        raise ImageError(f"{name}: the file is damaged or malformed and cannot be decoded ({type(error).__name__}).") from None


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
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


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
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError
                _check_size(width, height, name)
                kind = "animated image" if fmt in ("GIF", "WEBP", "PNG") else "multi-page file"
                try:  # counting frames reads every frame's header; a broken later frame must not cost the first
                    frames = getattr(image, "n_frames", 1)
                except Exception:  # noqa: BLE001 (struct.error, KeyError, OSError ...: any decoder's own)
                    image = Image.open(io.BytesIO(data))
                    frames = 0
                    notes.append(f"{kind} whose later frames are damaged: the first frame was used")
                if frames > 1:
                    image.seek(0)
                    notes.append(f"{kind} with {frames} frames: the first frame was used")
                reduced = fmt in ("JPEG", "MPO") and max(width, height) > DECODE_SIDE
                if reduced:
                    image.draft(image.mode, (DECODE_SIDE, DECODE_SIDE))  # DCT scaling: decode at 1/2, 1/4 or 1/8
                with decoding_share(DECODE_SIDE**2 if reduced else width * height):
                    image.load()
                    image = ImageOps.exif_transpose(image)
                    image = _fit(image, (width, height), notes)
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
    return LoadedImage(pixels=pixels, name=name, notes=notes)


@contextmanager
def decoding_share(pixels: int) -> Iterator[None]:
    """Wait until ``pixels`` more fit in ``DECODE_BUDGET`` (one image always may), and hold them while decoding.

    A small image (at most ``DECODE_SIDE`` squared) never waits: slices are far below it.
    """
    global _decoding_pixels
    if pixels <= DECODE_SIDE**2:
        yield
        return
    with _decoding:
        _decoding.wait_for(lambda: _decoding_pixels == 0 or _decoding_pixels + pixels <= DECODE_BUDGET)
        _decoding_pixels += pixels
    try:
        yield
    finally:
        with _decoding:
            _decoding_pixels -= pixels
            if _decoding_pixels == 0:
                _return_freed_memory()
            _decoding.notify_all()


def _return_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc keeps them otherwise); elsewhere nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs a subprocess), or ``None`` without glibc."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _fit(image: Image.Image, original: tuple[int, int], notes: list[str]) -> Image.Image:
    """An image larger than ``DECODE_SIDE`` brought down to it (a copy the models and the overlay need)."""
    if max(image.size) <= DECODE_SIDE:
        return image
    if image.mode == "1" or (image.mode == "P" and "transparency" not in image.info):
        image = image.convert("L" if image.mode == "1" else "RGB")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    image.thumbnail((DECODE_SIDE, DECODE_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    notes.append(f"read at {image.size[0]}x{image.size[1]} from {original[0]}x{original[1]} pixels")
    return image


def _check_size(width: int, height: int, name: str) -> None:
    """Refuse a slice too small or too elongated, from its size alone."""
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
    """An MR slice of the head from DICOM: modality rescale, the file's own window, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if data[128:132] != b"DICM":
        kind = _raster_format(data)
        if kind:  # e.g. a JPEG renamed .dcm: say so, and read it as what it is
            image = _read_raster(data, name)
            image.notes.append(f"the file is named .dcm but is a {kind} image, and was read as one")
            return image
    notes: list[str] = []
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, AttributeError, KeyError, TypeError, ValueError, OSError, EOFError) as error:
        raise ImageError(f"{name}: this is not a DICOM file we can read ({type(error).__name__}).") from None
    rows, columns = int(getattr(dataset, "Rows", 0) or 0), int(getattr(dataset, "Columns", 0) or 0)
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if "PixelData" not in dataset or not rows or not columns:
        raise ImageError(f"{name}: this DICOM file holds no image (no pixel data).")
    _check_modality(dataset, name)
    if rows * columns > MAX_PIXELS:
        raise ImageError(f"{name}: the DICOM image is {columns}x{rows} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels.")
    _check_size(columns, rows, name)
    middle = frames // 2
    try:
        pixels = _dicom_pixels(dataset, middle if frames > 1 else None)
    except (NotImplementedError, AttributeError, KeyError, TypeError, ValueError, OSError, EOFError, RuntimeError) as error:
        raise _decoding_error(error, dataset, name) from None
    if frames > 1:
        notes.append(f"multi-frame DICOM with {frames} frames: the middle frame ({middle + 1}) was used")
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    is_color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") or (pixels.ndim == 3 and pixels.shape[-1] == 3)
    if is_color:
        rgb = _stretch_to_uint8(pixels.astype(np.float64)) if pixels.dtype != np.uint8 else pixels
        return LoadedImage(pixels=_fit_array(np.ascontiguousarray(rgb), notes), name=name, notes=notes)
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(pixels, dataset)  # rescale slope and intercept, or a modality LUT
    window = _dicom_window(dataset)
    gray = None
    if window is not None or "VOILUTSequence" in dataset:
        # The file's own VOI: a window (linear, linear-exact or sigmoid) or a VOI LUT, as the scanner meant it.
        try:
            low, high = _voi_output_range(dataset)
            shown = apply_voi_lut(values, dataset, index=0).astype(np.float64)
            gray = np.round(np.clip((shown - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
            notes.append(f"DICOM window centre {window[0]:g}, width {window[1]:g} applied" if window else "DICOM VOI LUT applied")
        except Exception:  # noqa: BLE001 (an empty or odd VOI LUT, a width below 1 that pydicom's LINEAR refuses)
            if window is not None:  # the window as LINEAR_EXACT reads it (PS3.3 C.11.2.1.3.2): any width above 0
                centre, width = window
                linear = (np.asarray(values, np.float64) - centre) / width + 0.5
                gray = np.round(np.clip(linear, 0, 1) * 255).astype(np.uint8)
                notes.append(f"DICOM window centre {centre:g}, width {width:g} applied")
            else:
                notes.append("the DICOM file's VOI LUT is malformed and was not applied: its full range is shown")
    if gray is None:
        gray = _stretch_to_uint8(np.asarray(values, np.float64))
    if photometric == "MONOCHROME1":
        gray = 255 - gray
        notes.append("MONOCHROME1 DICOM inverted to MONOCHROME2")
    if not str(getattr(dataset, "BodyPartExamined", "") or "").strip():
        # Said beside any answer; beside a refusal by the MRI check it says why the file was not trusted.
        notes.append("the DICOM file does not say which body part it shows (no BodyPartExamined)")
    return LoadedImage(pixels=_fit_array(_gray_to_rgb(gray), notes), name=name, notes=notes)


def _raster_format(data: bytes) -> str | None:
    """The picture format of bytes that PIL recognises from their header, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _check_modality(dataset, name: str) -> None:
    """Refuse DICOM that is not MR, does not say what it is, or is MR of a part of the body other than the head.

    Modality is a required (type 1) attribute: a file without it could be anything, and a CT
    with the tag deleted would otherwise reach the classifier.
    """
    modality = str(getattr(dataset, "Modality", "") or "").upper().strip()
    if not modality:
        raise ImageError(f"{name}: this DICOM file does not say its modality, so tumor-ai cannot tell that it is an MR image.")
    if modality != "MR":
        kind = f" ({MODALITY_NAMES[modality]})" if modality in MODALITY_NAMES else ""
        raise ImageError(f"{name}: this DICOM file's modality is {modality}{kind}, not MR; tumor-ai reads brain MR images only.")
    part = str(getattr(dataset, "BodyPartExamined", "") or "").upper().strip()
    if part and part not in HEAD_PARTS:
        raise ImageError(f"{name}: this DICOM file is an MR image of the {part.lower()}; tumor-ai reads brain MR images only.")


def _decoding_error(error: Exception, dataset, name: str) -> ImageError:
    """A missing codec named by its transfer syntax (never pydicom's dependency list), or damaged data."""
    text = str(error).lower()
    if isinstance(error, NotImplementedError) or any(
        words in text for words in ("unable to decode", "missing required", "no available")
    ):
        return ImageError(f"{name}: this DICOM file is compressed as {_syntax(dataset)}, which tumor-ai cannot decode.")
    return ImageError(f"{name}: this DICOM file's pixel data is damaged and cannot be decoded ({type(error).__name__}).")


def _syntax(dataset) -> str:
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    return f"{syntax.name} ({syntax})" if syntax is not None else "an unknown transfer syntax"


def _dicom_pixels(dataset, frame: int | None) -> np.ndarray:
    """One frame's pixels (all frames are never decoded at once)."""
    from pydicom.pixels import pixel_array

    return pixel_array(dataset, index=frame) if frame is not None else dataset.pixel_array


def _fit_array(pixels: np.ndarray, notes: list[str]) -> np.ndarray:
    """A decoded array larger than ``DECODE_SIDE`` brought down to it."""
    height, width = pixels.shape[:2]
    if max(height, width) <= DECODE_SIDE:
        return pixels
    return np.asarray(_fit(Image.fromarray(pixels), (width, height), notes))


def _voi_output_range(dataset) -> tuple[float, float]:
    """The range ``apply_voi_lut`` maps into (PS3.3 C.11.2.1.2): a VOI LUT's bit depth, else the stored range after rescale."""
    if "VOILUTSequence" in dataset:
        return 0.0, float(2 ** int(dataset.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    if "ModalityLUTSequence" in dataset:
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(getattr(dataset, "BitsStored", 16))
    low, high = (
        (0.0, 2.0**bits - 1)
        if int(getattr(dataset, "PixelRepresentation", 0)) == 0
        else (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    )
    slope, intercept = getattr(dataset, "RescaleSlope", None), getattr(dataset, "RescaleIntercept", None)
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


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
