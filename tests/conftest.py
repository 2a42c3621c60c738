"""Shared fixtures: a synthetic MRI-like dataset with planted copies, and tiny models built here.

Nothing here needs the network or ../shared: images are drawn, models are built small.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tumor_ai" / "examples"
LABELS = ["glioma", "meningioma", "notumor", "pituitary"]
BLOB_CENTRES = {"glioma": (0.35, 0.3), "meningioma": (0.3, 0.7), "notumor": None, "pituitary": (0.62, 0.5)}


def synthetic_slice(label: str, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A grey 'head' (bright ring, textured inside) on black, with a bright blob placed by class."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    centre_r, centre_c = 0.5 + rng.normal(0, 0.04), 0.5 + rng.normal(0, 0.04)
    radius = np.sqrt(((rows - centre_r) / rng.uniform(0.34, 0.46)) ** 2 + ((cols - centre_c) / rng.uniform(0.3, 0.42)) ** 2)
    folds = sum(np.sin(2 * np.pi * (rng.uniform(1, 4) * rows + rng.uniform(1, 4) * cols) + rng.uniform(0, 6.3)) for _ in range(3))
    image = np.where(radius < 1.0, 0.4 + 0.08 * folds + 0.05 * rng.random((size, size)), 0.0)
    image = np.where((radius > 0.9) & (radius < 1.0), 0.85, image)
    blob = BLOB_CENTRES[label]
    if blob is not None:
        distance = np.sqrt((rows - blob[0] - rng.normal(0, 0.03)) ** 2 + (cols - blob[1] - rng.normal(0, 0.03)) ** 2)
        image = np.where(distance < 0.09 + rng.random() * 0.03, 0.95, image)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_dataset(root: Path, per_class: int = 12, seed: int = 0, size: int = 96) -> dict[str, list[str]]:
    """A ``<class>/`` folder with planted copies; returns the planted copy pairs by kind."""
    rng = np.random.default_rng(seed)
    planted: dict[str, list[tuple[str, str]]] = {"exact": [], "near": [], "mirror": []}
    for label in LABELS:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(synthetic_slice(label, rng, size)).save(folder / f"{label}_{index:03d}.png")
        source = folder / f"{label}_000.png"
        (folder / f"{label}_copy.png").write_bytes(source.read_bytes())
        planted["exact"].append((f"{label}/{label}_000.png", f"{label}/{label}_copy.png"))
        pixels = np.asarray(Image.open(folder / f"{label}_001.png")).astype(np.float64)
        Image.fromarray((255 * (pixels / 255) ** 0.6).astype(np.uint8)).save(folder / f"{label}_contrast.png")
        planted["near"].append((f"{label}/{label}_001.png", f"{label}/{label}_contrast.png"))
        Image.fromarray(np.asarray(Image.open(folder / f"{label}_002.png"))[:, ::-1]).save(folder / f"{label}_mirror.png")
        planted["mirror"].append((f"{label}/{label}_002.png", f"{label}/{label}_mirror.png"))
    return planted


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dataset")
    planted = write_dataset(root)
    return root, planted


@pytest.fixture(scope="session")
def slot_models(tmp_path_factory) -> dict[str, Path]:
    """Two small untrained CNNs, one in each of the app's model slots ('cnn' and 'vgg16').

    The one in the 'vgg16' slot is a CNN too (a real VGG16 has 15M weights, too slow for unit
    tests); its metadata says so (architecture 'cnn'), so nothing may assume VGG16 facts of it.
    """
    import keras

    from training.networks import build_cnn
    from tumor_ai.model.folder import save_model_folder

    keras.utils.set_random_seed(0)
    folders = {}
    for slot, filters in (("cnn", (4, 8)), ("vgg16", (6, 8))):
        model, metadata = build_cnn(LABELS, input_size=(48, 48), filters=filters, dense_units=8)
        metadata.name = slot
        folders[slot] = save_model_folder(model, metadata, tmp_path_factory.mktemp(slot) / slot)
    return folders


@pytest.fixture(scope="session")
def slot_predictors(slot_models):
    from tumor_ai.core.inference import Predictor

    return {name: Predictor.from_source(folder, precision="float32") for name, folder in slot_models.items()}


@pytest.fixture(scope="session")
def example_paths() -> dict[str, Path]:
    return {label: EXAMPLES / f"{label}.jpg" for label in LABELS}


@pytest.fixture(scope="module")
def toolbox(slot_predictors):
    """The agents' tools over the two small models (the Assistant's tests and its corpus)."""
    from tumor_ai.app.tools import Toolbox

    return Toolbox(slot_predictors)


@pytest.fixture
def with_slice(example_paths):
    """An Assistant conversation with the meningioma example attached."""
    from tumor_ai.app.assistant import Conversation

    return Conversation(slice_path=str(example_paths["meningioma"]), batch_paths=[str(example_paths["meningioma"])])


def write_hostile_mr_dicom(path: Path, body_part: str) -> None:
    """An MR DICOM whose BodyPartExamined carries ``body_part`` (markup, in the hostile tests): refusals quote the field."""
    import warnings

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.Modality, dataset.SOPClassUID = "MR", MRImageStorage
    with warnings.catch_warnings():  # longer than a CS value may be: a hostile file does not follow the standard
        warnings.simplefilter("ignore")
        dataset.BodyPartExamined = body_part
    dataset.Rows = dataset.Columns = 64
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit, dataset.PixelRepresentation = 15, 0
    dataset.PixelData = np.zeros((64, 64), np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
