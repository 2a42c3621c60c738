"""Every bad input gets its clear message; random bytes and random images never escape unhandled."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tumor_ai.core import imaging
from tumor_ai.core.imaging import ImageError, read_image


def _encoded(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _jpeg_truncated() -> bytes:
    data = _encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)), "JPEG")
    return data[: len(data) // 2]


BAD_INPUTS = [
    ("empty", b"", "the file is empty"),
    ("text", b"patient notes\nnothing to see here\n", "it is a text file, not an image"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "it is a PDF document, not an image"),
    ("program", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "it is a program, not an image"),
    ("windows program", b"MZ\x90\x00\x03" + bytes(200), "it is a program, not an image"),
    ("zip", b"PK\x03\x04" + bytes(100), "it is a zip archive"),
    ("random bytes", bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)), "not an image we can read"),
    ("truncated jpeg", _jpeg_truncated(), "truncated or corrupt"),
    ("tiny", _encoded(Image.new("L", (16, 16))), "at least 32x32"),
    ("extreme aspect", _encoded(Image.new("L", (1000, 40))), "aspect ratio of 25.0:1"),
    ("ico", _encoded(Image.new("RGB", (64, 64)), "ICO"), "ICO images are not accepted"),
]


@pytest.mark.parametrize("name,data,message", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_has_a_clear_message(name, data, message):
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_image(data, name="upload.jpg")


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="too many pixels"):
        read_image(_encoded(Image.new("L", (200, 200))))


def test_huge_file_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + bytes(5000))
    with pytest.raises(ImageError, match="the limit is"):
        read_image(path)


def test_missing_file():
    with pytest.raises(ImageError, match="file not found"):
        read_image("/nonexistent/slice.png")


def test_animated_gif_uses_first_frame_and_says_so():
    frames = [Image.new("L", (64, 64), value) for value in (10, 200, 90)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    loaded = read_image(buffer.getvalue(), name="anim.gif")
    assert loaded.pixels[0, 0, 0] == 10
    assert "3 frames: the first frame was used" in loaded.notes[0]


def test_multipage_tiff_uses_first_page():
    pages = [Image.new("L", (64, 64), value) for value in (50, 150)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    loaded = read_image(buffer.getvalue(), name="stack.tif")
    assert loaded.pixels[0, 0, 0] == 50 and "multi-page file with 2 frames" in loaded.notes[0]


def test_exif_rotation_is_applied():
    image = Image.new("L", (80, 40), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    loaded = read_image(_encoded(image, "JPEG", exif=exif.tobytes()))
    assert loaded.pixels.shape == (80, 40, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF", "WEBP"])
def test_accepted_formats(fmt):
    loaded = read_image(_encoded(Image.new("RGB", (64, 48), (40, 40, 40)), fmt), name=f"x.{fmt.lower()}")
    assert loaded.pixels.shape == (48, 64, 3)


def test_rgba_is_composited_on_black():
    loaded = read_image(_encoded(Image.new("RGBA", (40, 40), (255, 255, 255, 0))))
    assert loaded.pixels.max() == 0


def _dicom_bytes(
    pixels: np.ndarray, photometric: str = "MONOCHROME2", window=None, frames: int = 1, modality: str | None = "MR"
) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    if modality is not None:
        dataset.Modality = modality
    dataset.SOPClassUID = MRImageStorage
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    if frames > 1:
        dataset.NumberOfFrames = frames
    if window:
        dataset.WindowCenter, dataset.WindowWidth = window
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_dicom_window_and_monochrome1():
    ramp = np.tile(np.linspace(0, 2000, 64), (64, 1))
    loaded = read_image(_dicom_bytes(ramp, window=(1000, 1000)), name="slice.dcm")
    assert loaded.pixels[0, 0, 0] == 0 and loaded.pixels[0, -1, 0] == 255  # clipped outside 500..1500
    assert loaded.pixels[0, 32, 0] in range(100, 160)
    assert "window centre 1000" in loaded.notes[0]
    inverted = read_image(_dicom_bytes(ramp, "MONOCHROME1"), name="slice.dcm")
    assert inverted.pixels[0, 0, 0] == 255 and "MONOCHROME1" in inverted.notes[-2]
    assert "does not say which body part it shows" in inverted.notes[-1], "no BodyPartExamined: said beside the answer"


def test_dicom_multiframe_uses_middle_frame():
    volume = np.stack([np.full((40, 40), value) for value in (100, 500, 900)])
    loaded = read_image(_dicom_bytes(volume, frames=3), name="volume.dcm")
    assert "middle frame (2)" in loaded.notes[0]


def test_dicom_without_pixels_is_refused():
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.PatientName = "Nobody"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=False)
    with pytest.raises(ImageError, match="no pixel data"):
        read_image(buffer.getvalue(), name="report.dcm")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_escape(data):
    try:
        loaded = read_image(data, name="fuzz.bin")
    except ImageError as error:
        assert str(error)
    else:
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.ndim == 3


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "LA", "1"]),
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from(["PNG", "TIFF", "BMP", "WEBP", "GIF", "JPEG"]),
)
def test_random_valid_images_decode_or_refuse_clearly(mode, width, height, fmt):
    rng = np.random.default_rng(width * 1000 + height)
    image = Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).convert(mode)
    try:
        data = _encoded(image, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode: nothing to read
    try:
        loaded = read_image(data, name=f"x.{fmt.lower()}")
    except ImageError as error:
        assert "pixels" in str(error) or "aspect ratio" in str(error)
    else:
        assert loaded.pixels.shape[2] == 3 and loaded.pixels.dtype == np.uint8


PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def test_large_images_are_decoded_to_the_size_the_app_needs():
    from tumor_ai.core.imaging import DECODE_SIDE

    png = read_image(_encoded(Image.new("L", (3000, 2400), 90)), name="big.png")
    jpeg = read_image(_encoded(Image.new("RGB", (4000, 4000), (90, 90, 90)), "JPEG"), name="big.jpg")
    assert png.pixels.shape == (819, DECODE_SIDE, 3) and "read at 1024x819 from 3000x2400 pixels" in png.notes
    assert max(jpeg.pixels.shape[:2]) == DECODE_SIDE and jpeg.pixels.dtype == np.uint8
    small = read_image(_encoded(Image.new("L", (512, 512), 90)), name="slice.png")
    assert small.pixels.shape == (512, 512, 3) and not small.notes  # the dataset's sizes are read as they are


def test_a_strip_is_refused_from_its_header_before_decoding(monkeypatch):
    strip = _encoded(Image.new("L", (5000, 100)))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded before the size was checked"))
    with pytest.raises(ImageError, match="aspect ratio of 50.0:1"):
        read_image(strip, name="strip.png")


@pytest.mark.parametrize(
    "file,message",
    [
        ("CT_small.dcm", "modality is CT (computed tomography), not MR"),
        ("693_J2KI.dcm", "modality is CT"),
        ("JPEG2000.dcm", "modality is NM (nuclear medicine), not MR"),
        ("examples_overlay.dcm", "an MR image of the abdomen"),
        ("SC_rgb_jpeg.dcm", "modality is OT"),
    ],
)
def test_dicom_that_is_not_a_brain_mr_image_is_refused_by_name(file, message):
    with pytest.raises(ImageError, match=re.escape(message)):
        read_image(PYDICOM_FILES / file)


@pytest.mark.parametrize(
    "file", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"]
)
def test_compressed_mr_dicom_decodes_like_the_uncompressed_file(file):
    reference = read_image(PYDICOM_FILES / "MR_small.dcm").pixels
    np.testing.assert_array_equal(read_image(PYDICOM_FILES / file).pixels, reference)


def test_a_missing_codec_is_named_without_a_dependency_list(monkeypatch):
    import tumor_ai.core.imaging as imaging

    def no_codec(dataset, frame):
        raise RuntimeError(
            "Unable to decode the pixel data as a (JPEG-LS Lossless) transfer syntax: missing required dependencies"
        )

    monkeypatch.setattr(imaging, "_dicom_pixels", no_codec)
    with pytest.raises(ImageError, match=r"compressed as JPEG-LS Lossless Image Compression \(1.2.840.10008.1.2.4.80\), which"):
        read_image(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm")


@pytest.mark.parametrize("modality", [None, ""])
def test_dicom_that_does_not_say_its_modality_is_refused(modality):
    # A CT with its Modality tag deleted was classified (meningioma 82%); the tag is required (type 1).
    ramp = np.tile(np.linspace(0, 2000, 64), (64, 1))
    with pytest.raises(ImageError, match="does not say its modality"):
        read_image(_dicom_bytes(ramp, modality=modality), name="slice.dcm")


def test_damaged_dicom_pixels_are_named_as_damage():
    with pytest.raises(ImageError, match="pixel data is damaged"):
        read_image(PYDICOM_FILES / "MR_truncated.dcm")


def test_a_jpeg_named_dcm_says_it_is_a_jpeg():
    jpeg = _encoded(Image.new("L", (64, 64), 100), "JPEG")
    loaded = read_image(jpeg, name="scan.dcm")
    assert loaded.pixels.shape == (64, 64, 3) and "named .dcm but is a JPEG image" in loaded.notes[0]


def test_dicom_sigmoid_voi_function_is_applied_as_the_scanner_meant():
    """pydicom's VOI handling covers what a hand-written linear window did not: here a SIGMOID function."""
    ramp = np.tile(np.linspace(0, 2000, 64), (64, 1))
    dataset = pydicom.dcmread(io.BytesIO(_dicom_bytes(ramp, window=(1000, 1000))))
    dataset.VOILUTFunction = "SIGMOID"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    linear = read_image(_dicom_bytes(ramp, window=(1000, 1000)), name="linear.dcm").pixels[0, :, 0].astype(int)
    sigmoid = read_image(buffer.getvalue(), name="sigmoid.dcm").pixels[0, :, 0].astype(int)
    assert linear[8] == 0 and sigmoid[8] > 0, "a sigmoid never clips at the window's edge"
    assert abs(int(sigmoid[32]) - 128) <= 8 and np.all(np.diff(sigmoid) >= 0)
