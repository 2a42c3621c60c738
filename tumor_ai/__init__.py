"""tumor-ai: brain-tumour MRI classification for research and teaching (never a diagnosis)."""

__version__ = "1.0.0"

DISCLAIMER = (
    "tumor-ai is a research and teaching tool. It is not a medical device and does not give a "
    "diagnosis: never use it to make clinical decisions."
)
NOT_A_DIAGNOSIS = "Not a diagnosis: tumor-ai is not a medical device."  # each answer's reminder; the page shows DISCLAIMER once

from tumor_ai import _moved  # noqa: E402 - the old flat module paths, for one release

_moved.install()
