"""bfloat16 where the CPU has it: for training (``training.engine``) and for serving (``tumor_ai.core.inference``).

On a CPU with AVX512-BF16 or AMX, convolutions in bfloat16 run about twice as fast as in
float32. Serving in bfloat16 keeps the weights float32 and the logits layer in float32, so the
probabilities, the temperature and the not-an-MRI features are computed at full width from
bfloat16 activations; ``benchmarks/precision_agreement.py`` measures how far they move.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """True when the CPU reports native bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(name: str, cpuinfo: str | None = None) -> str:
    """The Keras dtype policy for a precision flag: ``auto`` is ``mixed_bfloat16`` where the CPU has it."""
    if name == "auto":
        return "mixed_bfloat16" if cpu_has_bfloat16(cpuinfo) else "float32"
    return PRECISIONS[name]


def with_policy(model, policy: str, keep: set[str] = frozenset()):
    """A copy of a functional model whose layers compute under ``policy``, with the same weights.

    Layers named in ``keep`` (the logits layer) and the input stay as saved.
    """
    import keras

    if policy == "float32":
        return model
    config = model.get_config()
    dtype = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": policy}, "registered_name": None}
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer" or layer["name"] in keep or "dtype" not in layer["config"]:
            continue
        layer["config"]["dtype"] = dtype
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone
