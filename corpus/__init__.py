"""Build the GuardReasoner-VL reasoning corpus: staged, checkpointed, resumable pipelines."""

from corpus.guard_format import parse_answers

__version__ = "0.1.0"
__all__ = ["parse_answers", "__version__"]
