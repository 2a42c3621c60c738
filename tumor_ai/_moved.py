"""The old flat module paths (``tumor_ai.models``, ``tumor_ai.handlers``, ...) for one release, with a DeprecationWarning.

Each old path is a two-line module that calls ``alias``: importing it warns once and hands back the moved
module itself (the same object, so ``monkeypatch`` and ``isinstance`` see one module), and ``python -m`` on
the old path runs the new one.
"""

from __future__ import annotations

import importlib
import runpy
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make the module being imported as ``old`` the module ``new``, warning that ``old`` goes in the next release."""
    if old == "__main__":
        runpy.run_module(new, run_name="__main__", alter_sys=True)
        return
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
