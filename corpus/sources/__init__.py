"""Seed source adapters. Importing this package registers every built-in adapter (see base.register)."""

from corpus.sources import benchmarks, declarative, guardreasoner, hod, spavl, text, unsafebench, vlguard, vltest  # noqa: F401  # noqa: F401  (image adapters)
