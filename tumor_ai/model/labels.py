"""Display names and plain-language descriptions of the classes we know.

The list of classes a model predicts is not kept here: it lives in each model's metadata,
taken from the dataset's class folders, so a new tumour type needs only a new folder.
"""

DISPLAY_NAMES: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary tumour",
}

DESCRIPTIONS: dict[str, str] = {
    "glioma": "a tumour that grows from the glial (supporting) cells of the brain",
    "meningioma": "a tumour of the meninges, the membranes that wrap the brain",
    "notumor": "no tumour of the kinds the model knows",
    "pituitary": "a tumour of the pituitary gland at the base of the brain",
}


def display_name(label: str) -> str:
    """A person-readable name; unknown labels (new folders) fall back to a tidied folder name."""
    return DISPLAY_NAMES.get(label, label.replace("_", " ").replace("-", " ").capitalize())


def describe(label: str) -> str:
    """One clause that says what the class is, for the plain-language reading."""
    return DESCRIPTIONS.get(label, f"the class '{display_name(label)}'")
