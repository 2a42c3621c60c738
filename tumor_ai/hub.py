"""Deprecated: moved to ``tumor_ai.publish.hub``; this path works until the next release."""

from tumor_ai._moved import alias

alias(__name__, "tumor_ai.publish.hub")
