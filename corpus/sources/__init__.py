"""Seed source adapters. Importing this package registers every built-in adapter (see base.register)."""

from corpus.sources import benchmarks, declarative, guardreasoner, text  # noqa: F401

try:
    from corpus.sources import image_sources  # noqa: F401
except ModuleNotFoundError as exc:  # the image adapters are optional until their module exists
    if exc.name != "corpus.sources.image_sources":
        raise
