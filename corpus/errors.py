"""Errors a user acts on, in one module every layer may import (it imports nothing of the package)."""

from __future__ import annotations


class RecipeError(ValueError):
    """The recipe file is missing, not YAML, or does not validate."""
