"""Evaluation of guard models on the GuardReasoner and GuardReasoner-VL benchmarks.

- :mod:`corpus.evaluation.protocols`: benchmark -> task, gold labels, reading predictions, F1; the released
  GuardReasoner scorer's protocol (``guardreasoner``) and the strict one;
- :mod:`corpus.evaluation.predictions`: GuardReasoner's ``<Benchmark>/generated_predictions.jsonl`` layout;
- :mod:`corpus.evaluation.benchmarks`: benchmark rows through the eval-set adapters;
- :mod:`corpus.evaluation.published`: the published tables (``published.yaml``);
- :mod:`corpus.evaluation.report`: the report (JSON and table);
- :mod:`corpus.evaluation.config`: the recipe's ``evaluate:`` section.

The stage that generates and scores is :mod:`corpus.stages.evaluate`.
"""
