"""Deprecated: moved to ``tumor_ai.core.explain``; this path works until the next release."""

from tumor_ai._moved import alias

alias(__name__, "tumor_ai.core.explain")
