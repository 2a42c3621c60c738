"""Deprecated: moved to ``tumor_ai.model.sources``; this path works until the next release."""

from tumor_ai._moved import alias

alias(__name__, "tumor_ai.model.sources")
