"""Deprecated: moved to ``tumor_ai.core.safe_text``; this path works until the next release."""

from tumor_ai._moved import alias

alias(__name__, "tumor_ai.core.safe_text")
