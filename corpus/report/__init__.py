"""Audit and plan: the HTML report, the dataset card, provenance traces, the cost plan, near-duplicates
and the label-noise audit. Everything here reads run directories (Parquet parts + ``_manifest.json``)
and never changes a stage's output."""
