"""Build the GuardReasoner-VL reasoning corpus: staged, checkpointed, resumable pipelines."""

__version__ = "0.1.0"
