"""Every decoder failure is one sentence for that file (issue 41.5): hand-made odd files and a seeded mutation fuzz.

Each format's reader in ``tumor_ai.core.imaging`` gets a small valid file, then mutated copies of it (bytes
flipped, runs overwritten, cut short, bytes inserted), from a fixed seed and a fixed count, so a run is
bounded and repeatable: ``read_image`` must return an RGB image or raise ``ImageError``, nothing else.
"""

from __future__ import annotations

import io
import random
import warnings

import numpy as np
import pytest
from PIL import Image

from tumor_ai.core.imaging import ImageError, LoadedImage, read_image

MUTANTS = 60  # per format; a few seconds in all


def _picture(size: int = 48) -> Image.Image:
    ramp = np.linspace(0, 255, size * size, dtype=np.float64).reshape(size, size)
    return Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], -1).astype(np.uint8))


def _raster(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, fmt, **options)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [_picture().rotate(angle) for angle in (0, 90, 180)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _multipage_tiff() -> bytes:
    pages = [_picture(), _picture().rotate(90), _picture().convert("L")]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def _dicom(**fields) -> bytes:
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.Modality, dataset.SOPClassUID, dataset.BodyPartExamined = "MR", MRImageStorage, "HEAD"
    dataset.Rows = dataset.Columns = 48
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit, dataset.PixelRepresentation = 15, 0
    dataset.PixelData = (np.arange(48 * 48, dtype=np.uint16) % 4000).tobytes()
    lut = fields.pop("lut", None)
    for key, value in fields.pop("text", {}).items():  # text where the standard wants a number, as a hostile file has
        dataset.add_new(key, "LO", value)
    for key, value in fields.items():
        setattr(dataset, key, value)
    if lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", lut[0])  # LUT Descriptor: entries, first value mapped, bits
        item.add_new(0x00283006, "US", lut[1])  # LUT Data
        dataset.VOILUTSequence = [item]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


SEEDS = {
    "png": lambda: _raster("PNG"),
    "jpeg": lambda: _raster("JPEG", quality=90),
    "bmp": lambda: _raster("BMP"),
    "webp": lambda: _raster("WEBP"),
    "gif": _animated_gif,
    "tiff": _multipage_tiff,
    "dcm": lambda: _dicom(WindowCenter=2000, WindowWidth=4000),
    "voi.dcm": lambda: _dicom(lut=([4, 0, 16], [0, 1000, 2000, 4000])),
}


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # overwrite a run
        start = rng.randrange(len(data))
        data[start : start + rng.randint(2, 64)] = bytes(rng.randrange(256) for _ in range(rng.randint(2, 64)))
    elif kind == 2:  # cut short
        del data[rng.randint(16, max(17, len(data) - 1)) :]
    else:  # insert bytes
        start = rng.randrange(len(data))
        data[start:start] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return bytes(data)


def _read_or_refuse(data: bytes, name: str) -> None:
    try:
        loaded = read_image(data, name=name)
    except ImageError as error:
        assert str(error).startswith(name) and "\n" not in str(error)
        return
    assert isinstance(loaded, LoadedImage) and loaded.pixels.dtype == np.uint8 and loaded.pixels.shape[-1] == 3


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_mutated_files_of_each_format_decode_or_are_refused_in_one_sentence(suffix):
    seed = SEEDS[suffix]()
    read_image(seed, name=f"seed.{suffix}")  # the unmutated file reads
    rng = random.Random(f"issue-41-{suffix}")
    for index in range(MUTANTS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _read_or_refuse(_mutate(seed, rng), f"mutant{index}.{suffix}")


def _broken_tiff_page() -> bytes:
    """A two-page TIFF whose second page's directory points past the end of the file."""
    data = bytearray(_multipage_tiff())
    ifd = int.from_bytes(data[4:8], "little")
    count = int.from_bytes(data[ifd : ifd + 2], "little")
    next_at = ifd + 2 + 12 * count
    data[next_at : next_at + 4] = (len(data) + 10_000).to_bytes(4, "little")
    return bytes(data)


def _truncated_gif() -> bytes:
    data = _animated_gif()
    return data[: int(len(data) * 0.7)]


ODD = {
    "a multi-page TIFF with a broken page": ("odd.tiff", _broken_tiff_page),
    "a truncated animated GIF": ("odd.gif", _truncated_gif),
    "a DICOM whose window width is text": ("odd.dcm", lambda: _dicom(WindowCenter=40, text={0x00281051: "wide"})),
    "a DICOM whose rows are text": ("odd.dcm", lambda: _dicom(text={0x00280010: "many"})),
    "a DICOM window narrower than 1 (valid DICOM)": ("odd.dcm", lambda: _dicom(WindowCenter=2000, WindowWidth=0.5)),
    "an empty VOI LUT": ("odd.dcm", lambda: _dicom(lut=([0, 0, 16], []))),
    "a VOI LUT of one entry, 40 bits deep": ("odd.dcm", lambda: _dicom(lut=([1, 0, 40], [7]))),
    "a DICOM rescale slope of text": ("odd.dcm", lambda: _dicom(RescaleIntercept=0, text={0x00281053: "x"})),
}


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_files_decode_or_are_refused_in_one_sentence(case):
    name, build = ODD[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _read_or_refuse(build(), name)


def test_a_window_narrower_than_1_is_read_not_refused():
    loaded = read_image(_dicom(WindowCenter=2000, WindowWidth=0.5), name="narrow.dcm")
    assert loaded.pixels.shape == (48, 48, 3)


def test_an_unreadable_file_is_one_sentence(tmp_path, monkeypatch):
    from pathlib import Path

    locked = tmp_path / "locked.png"
    locked.write_bytes(_raster("PNG"))

    def refuse(self):  # what a file without read permission does (the tests may run as root, who reads anything)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ImageError, match="locked.png: the file cannot be read"):
        read_image(locked)


def test_mutated_zips_cost_rows_never_the_batch(tmp_path):
    """A zip's own damage (its directory, a member's header) is a row with its reason, like a picture's."""
    import zipfile

    from tumor_ai.core.batch import decode, iter_inputs

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("a.png", _raster("PNG"))
        handle.writestr("b.jpg", _raster("JPEG"))
    seed = archive.getvalue()
    rng = random.Random("issue-41-zip")
    for index in range(MUTANTS):
        path = tmp_path / f"mutant{index}.zip"
        path.write_bytes(_mutate(seed, rng))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = [decode(name, source) for name, source in iter_inputs([path])]
        assert items and all((item.image is None) != (item.error is None) for item in items)
