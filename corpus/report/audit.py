"""Label-noise audit (placeholder until implemented)."""


def audit_summary(run_dir):
    return None
