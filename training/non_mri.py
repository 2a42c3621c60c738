"""Pictures that are not brain MRI slices, for fitting and measuring the not-an-MRI check.

Each picture has a family (``photo``, ``generated``, ``ct``, ``radiograph``, ``ultrasound``,
``other medical``) and a source (the file or generator it came from), so the check can be scored
leaving one source out: a refusal that only works on the very pictures it was fitted on is not
reported as one. Real medical pictures come from pydicom's test files (three CT slices, four
ultrasound clips, a nuclear-medicine scan); radiographs and more ultrasound are drawn here, from
simple physics (attenuation along rays, multiplicative speckle in a fan), since no radiograph
ships with pydicom.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CT_WINDOWS = {  # name: (level, width) in Hounsfield units; "auto" stretches the 0.5-99.5 percentiles
    "auto": None,
    "brain": (40, 80),
    "stroke": (35, 40),
    "subdural": (75, 215),
    "soft tissue": (50, 350),
    "bone": (600, 2800),
    "lung": (-600, 1500),
    "full range": (1000, 4000),
}
CT_FILES = ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm")
ULTRASOUND_FILES = ("examples_jpeg2k.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_ybr_color.dcm")
SKIMAGE_SAMPLES = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "page", "text", "moon", "horse",
    "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass", "gravel", "clock",
)  # fmt: skip


@dataclass(frozen=True)
class Picture:
    """One picture that is not a brain MRI slice, with where it came from."""

    name: str
    family: str
    source: str
    pixels: np.ndarray  # RGB uint8


def gray_rgb(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as a grey RGB ``uint8`` picture."""
    return np.repeat((np.clip(values, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def general_pictures(seed: int = 0) -> list[Picture]:
    """Photos and documents from scikit-image, and generated blank, noise, gradient, text and colour pictures."""
    from PIL import Image, ImageDraw

    pictures = []
    try:
        from skimage import data as samples

        for name in SKIMAGE_SAMPLES:
            picture = getattr(samples, name)()
            if picture.dtype == bool:
                picture = picture.astype(np.uint8) * 255
            if picture.ndim == 2:
                picture = np.repeat(picture[..., None], 3, axis=-1)
            pixels = np.ascontiguousarray(picture[..., :3]).astype(np.uint8)
            pictures.append(Picture(f"skimage:{name}", "photo", f"skimage:{name}", pixels))
    except ImportError:
        pass
    rng = np.random.default_rng(seed)
    size = (256, 256)
    ramp = np.linspace(0, 255, size[1], dtype=np.float32)
    screenshot = Image.new("RGB", (640, 400), (245, 245, 245))
    draw = ImageDraw.Draw(screenshot)
    draw.rectangle((0, 0, 640, 36), fill=(40, 90, 160))
    for line in range(14):
        draw.text((20, 50 + 24 * line), f"Line {line}: the quick brown fox jumps over the lazy dog " * 2, fill=(20, 20, 20))
    checker = (np.indices(size).sum(axis=0) // 32 % 2 * 255).astype(np.uint8)
    generated = {
        "blank black": np.zeros((*size, 3), np.uint8),
        "blank white": np.full((*size, 3), 255, np.uint8),
        "blank grey": np.full((*size, 3), 128, np.uint8),
        "uniform noise": rng.integers(0, 256, (*size, 3), dtype=np.uint8),
        "grey noise": np.repeat(rng.integers(0, 256, (*size, 1), dtype=np.uint8), 3, axis=-1),
        "gaussian noise": np.clip(rng.normal(128, 40, (*size, 3)), 0, 255).astype(np.uint8),
        "grey gradient": np.repeat(np.tile(ramp, (size[0], 1))[..., None], 3, axis=-1).astype(np.uint8),
        "colour gradient": np.stack(
            [np.tile(ramp, (size[0], 1)), np.tile(ramp[:, None], (1, size[1])), 255 - np.tile(ramp, (size[0], 1))], -1
        ).astype(np.uint8),
        "text screenshot": np.asarray(screenshot),
        "checkerboard": np.repeat(checker[..., None], 3, axis=-1),
        "colour blocks": np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((32, 32, 1))).astype(np.uint8),
    }
    return pictures + [Picture(name, "generated", name, pixels) for name, pixels in generated.items()]


def _test_file(name: str) -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files" / name


def ct_pictures() -> list[Picture]:
    """pydicom's three CT slices (one a head) at every window in ``CT_WINDOWS``, as a viewer would export them."""
    import pydicom

    pictures = []
    for name in CT_FILES:
        dataset = pydicom.dcmread(_test_file(name))
        values = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        for window, setting in CT_WINDOWS.items():
            if setting is None:
                low, high = np.percentile(values, [0.5, 99.5])
            else:
                low, high = setting[0] - setting[1] / 2, setting[0] + setting[1] / 2
            pictures.append(Picture(f"CT {name} ({window} window)", "ct", name, gray_rgb((values - low) / (high - low))))
    return pictures


def ultrasound_files() -> list[Picture]:
    """pydicom's four ultrasound clips (one frame each), decoded as tumor-ai decodes DICOM, and a grey copy of each."""
    import pydicom

    from tumor_ai.core.imaging import read_image

    pictures = []
    for name in ULTRASOUND_FILES:
        dataset = pydicom.dcmread(_test_file(name))
        dataset.Modality, dataset.BodyPartExamined = "MR", "HEAD"  # as if exported as a plain picture
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        pixels = read_image(buffer.getvalue(), name).pixels
        grey = np.repeat(pixels.mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.uint8)
        pictures += [Picture(f"US {name}", "ultrasound", name, pixels), Picture(f"US {name} (grey)", "ultrasound", name, grey)]
    return pictures


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(values, sigma)


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0) -> np.ndarray:
    rows, cols = np.indices(shape, dtype=np.float32)
    y, x = rows - centre[0], cols - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = x * cos + y * sin, -x * sin + y * cos
    return (u / axes[1]) ** 2 + (v / axes[0]) ** 2 <= 1.0


def _expose(density: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """A radiograph (grey RGB) from a map of attenuation along each ray: bright where much is absorbed, film grain on top."""
    absorbed = 1.0 - np.exp(-gain * _smooth(density, 1.2))
    noisy = absorbed + rng.normal(0, 0.015, absorbed.shape)
    return gray_rgb(noisy / max(np.percentile(noisy, 99.7), 1e-3))


def chest_radiograph(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A PA chest radiograph: trunk, dark lungs, ribs, spine, heart and clavicles."""
    shape = (size, size)
    density = 0.02 * np.ones(shape, np.float32)
    width = rng.uniform(0.40, 0.48) * size
    density += 1.0 * _ellipse(shape, (0.62 * size, size / 2), (0.62 * size, width))
    for side in (-1, 1):
        lung = _ellipse(shape, (0.50 * size, size / 2 + side * 0.19 * size), (0.30 * size, 0.13 * size), side * 0.12)
        density -= 0.65 * lung
        for rib in range(9):
            y = 0.25 * size + rib * 0.055 * size
            rows, cols = np.indices(shape, dtype=np.float32)
            arc = np.abs(rows - (y + 0.0006 * (cols - size / 2 - side * 0.05 * size) ** 2 * rng.uniform(0.8, 1.2)))
            density += 0.35 * ((arc < 0.010 * size) & lung)
        density += 0.9 * _ellipse(shape, (0.22 * size, size / 2 + side * 0.17 * size), (0.015 * size, 0.14 * size), side * 0.25)
    density += 0.8 * (np.abs(np.indices(shape)[1] - size / 2) < 0.035 * size)
    density += 0.7 * _ellipse(shape, (0.60 * size, size / 2 + 0.06 * size), (0.14 * size, 0.13 * size))
    return _expose(np.clip(density, 0, None), rng, rng.uniform(1.4, 2.2))


def skull_radiograph(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A lateral skull radiograph: a bright vault ring, the skull base, the face and the spine below."""
    shape = (size, size)
    centre = (0.42 * size, 0.52 * size)
    axes = (rng.uniform(0.30, 0.34) * size, rng.uniform(0.36, 0.40) * size)
    outer = _ellipse(shape, centre, axes)
    inner = _ellipse(shape, centre, (axes[0] - 0.03 * size, axes[1] - 0.03 * size))
    density = 0.6 * outer + 1.2 * (outer & ~inner)
    density += 1.0 * _ellipse(shape, (0.62 * size, 0.45 * size), (0.04 * size, 0.22 * size), 0.3)  # skull base
    density += 0.7 * _ellipse(shape, (0.66 * size, 0.22 * size), (0.16 * size, 0.12 * size))  # face
    density += 0.8 * (np.abs(np.indices(shape)[1] - 0.55 * size) < 0.05 * size) * (np.indices(shape)[0] > 0.72 * size)
    density += 0.15 * _smooth(rng.normal(0, 1, shape), 6) * outer
    return _expose(np.clip(density, 0, None), rng, rng.uniform(1.2, 2.0))


def hand_radiograph(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A hand radiograph: grey soft tissue around bright bones of the palm and five fingers."""
    from PIL import Image, ImageDraw

    soft, bone = Image.new("F", (size, size), 0.0), Image.new("F", (size, size), 0.0)
    draw_soft, draw_bone = ImageDraw.Draw(soft), ImageDraw.Draw(bone)
    palm = (0.5 * size, 0.7 * size)
    draw_soft.ellipse((palm[0] - 0.2 * size, palm[1] - 0.16 * size, palm[0] + 0.2 * size, palm[1] + 0.2 * size), fill=0.5)
    draw_soft.rectangle((palm[0] - 0.12 * size, palm[1], palm[0] + 0.12 * size, size), fill=0.5)
    for finger, angle in enumerate(np.linspace(-0.7, 0.55, 5) + rng.normal(0, 0.05, 5)):
        length = (0.26 if finger in (1, 2, 3) else 0.2) * size
        base = (palm[0] + np.sin(angle) * 0.14 * size, palm[1] - np.cos(angle) * 0.12 * size)
        tip = (base[0] + np.sin(angle) * length * 1.4, base[1] - np.cos(angle) * length * 1.4)
        draw_soft.line((*base, *tip), fill=0.5, width=int(0.06 * size))
        draw_bone.line((palm[0] + np.sin(angle) * 0.03 * size, palm[1] + 0.1 * size, *base), fill=1.0, width=int(0.025 * size))
        for joint in range(3):
            a = joint / 3 + 0.02
            b = (joint + 1) / 3 - 0.02
            start = (base[0] + (tip[0] - base[0]) * a, base[1] + (tip[1] - base[1]) * a)
            end = (base[0] + (tip[0] - base[0]) * b, base[1] + (tip[1] - base[1]) * b)
            draw_bone.line((*start, *end), fill=1.0, width=int(0.028 * size))
    density = np.asarray(soft) + 0.9 * np.asarray(bone)
    return _expose(density, rng, rng.uniform(1.5, 2.5))


def ultrasound_fan(rng: np.random.Generator, size: int = 480, linear: bool = False) -> np.ndarray:
    """A B-mode ultrasound frame: speckle in a fan (or a linear probe's rectangle), dark cysts, bright echoes, labels."""
    from PIL import Image, ImageDraw

    rows, cols = np.indices((size, size), dtype=np.float32)
    apex = (0.05 * size, size / 2)
    depth = np.hypot(rows - apex[0], cols - apex[1])
    if linear:
        field = (cols > 0.2 * size) & (cols < 0.8 * size) & (rows > 0.08 * size) & (rows < 0.92 * size)
    else:
        angle = np.arctan2(cols - apex[1], rows - apex[0])
        field = (np.abs(angle) < rng.uniform(0.45, 0.75)) & (depth > 0.05 * size) & (depth < 0.9 * size)
    tissue = 0.55 + 0.25 * _smooth(rng.normal(0, 1, (size, size)), 20)
    for _ in range(rng.integers(1, 4)):
        centre = (rng.uniform(0.3, 0.8) * size, rng.uniform(0.35, 0.65) * size)
        tissue -= 0.5 * _ellipse((size, size), centre, tuple(rng.uniform(0.04, 0.12, 2) * size))
    for _ in range(rng.integers(2, 6)):
        y = rng.uniform(0.2, 0.85) * size
        tissue += 0.6 * (np.abs(rows - y - 0.1 * (cols - size / 2) * rng.normal()) < 2)
    speckle = rng.rayleigh(0.65, (size, size)).astype(np.float32)
    speckle = _smooth(speckle, (1.0, 2.5))  # speckle cells are wider than they are deep
    image = np.clip(tissue, 0.02, None) * speckle * np.exp(-depth / size * rng.uniform(0.5, 1.5)) * field
    picture = Image.fromarray((np.clip(image / max(np.percentile(image, 99.5), 1e-3), 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for line, text in enumerate(("GEN 5.0MHz", "DR 60 G 54", "FR 24Hz", "ABDOMEN")):
        draw.text((6, 6 + 12 * line), text, fill=220)
    for mark in range(8):
        draw.point((size - 10, 0.1 * size + mark * 0.1 * size), fill=255)
    return np.repeat(np.asarray(picture)[..., None], 3, axis=-1)


DRAWN = {  # family, generator, how many of each
    "chest radiograph": ("radiograph", chest_radiograph, 6),
    "skull radiograph": ("radiograph", skull_radiograph, 6),
    "hand radiograph": ("radiograph", hand_radiograph, 4),
    "ultrasound fan": ("ultrasound", ultrasound_fan, 6),
    "ultrasound linear": ("ultrasound", lambda rng: ultrasound_fan(rng, linear=True), 4),
}


def drawn_pictures(seed: int = 0) -> list[Picture]:
    """Radiographs and ultrasound frames drawn by the generators in ``DRAWN``."""
    pictures = []
    for source, (family, generator, count) in DRAWN.items():
        for index in range(count):
            rng = np.random.default_rng([seed, index, len(source)])
            pictures.append(Picture(f"{source} {index + 1}", family, source, generator(rng)))
    return pictures


def medical_pictures(seed: int = 0) -> list[Picture]:
    """Every medical picture that is not a brain MRI: CT at eight windows, ultrasound, radiographs, a phantom, NM."""
    import pydicom
    from skimage.data import shepp_logan_phantom

    scan = pydicom.dcmread(_test_file("JPEG2000.dcm")).pixel_array.astype(np.float64)
    others = [
        Picture("head phantom (Shepp-Logan)", "other medical", "phantom", gray_rgb(shepp_logan_phantom())),
        Picture("NM whole-body bone scan", "other medical", "JPEG2000.dcm", gray_rgb(scan / scan.max())),
    ]
    return ct_pictures() + ultrasound_files() + drawn_pictures(seed) + others


def variant(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A picture as it might reach the app another time: cropped, mirrored, re-contrasted, noisier, JPEG-compressed."""
    from PIL import Image

    height, width = pixels.shape[:2]
    share = rng.uniform(0.7, 1.0)
    top, left = rng.integers(0, int(height * (1 - share)) + 1), rng.integers(0, int(width * (1 - share)) + 1)
    picture = pixels[top : top + int(height * share), left : left + int(width * share)].astype(np.float32) / 255
    if rng.random() < 0.5:
        picture = picture[:, ::-1]
    picture = np.clip(picture ** rng.uniform(0.6, 1.6) * rng.uniform(0.8, 1.2) + rng.normal(0, 0.01, picture.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((picture * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
    return np.asarray(Image.open(buffer).convert("RGB"))
