"""Near-duplicates (placeholder until implemented)."""


def near_duplicate_report(run_dir):
    return None
