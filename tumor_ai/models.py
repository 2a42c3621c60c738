"""Deprecated: split into ``tumor_ai.model.metadata``, ``tumor_ai.model.folder`` and ``training.networks``.

This path works until the next release; the network builders are imported from training when asked for.
"""

from __future__ import annotations

import warnings

from tumor_ai.model.folder import *  # noqa: F403
from tumor_ai.model.folder import (  # noqa: F401
    library_versions,
    load_model,
    parse_hub_source,
    resolve_source,
    save_model_folder,
    without_optimizer,  # noqa: F401
)
from tumor_ai.model.metadata import *  # noqa: F403
from tumor_ai.model.metadata import (  # noqa: F401
    DERIVED_KEYS,
    SCHEMA_VERSION,
    TYPED_BLOCKS,
    Calibration,
    ClassScores,
    DatasetRecord,
    FamilyRates,
    Metrics,
    ModelMetadata,
    MriCheckRecord,
    Scores,
    refuse_unknown_keys,
)

warnings.warn(
    "tumor_ai.models moved to tumor_ai.model.metadata, tumor_ai.model.folder and training.networks; "
    "the old path goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
NETWORKS = {"build_cnn", "build_vgg16", "classification_head", "residual_block"}


def __getattr__(name: str):
    """The network builders, from ``training.networks`` (``tumor_ai.training.networks`` in the wheel)."""
    if name in NETWORKS:
        from tumor_ai.model.registry import import_training_aware

        return getattr(import_training_aware("training.networks"), name)
    raise AttributeError(f"module 'tumor_ai.models' has no attribute {name!r}")
