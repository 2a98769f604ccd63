"""scripts/gpu_check_sample.py at toy scale on CPU (--tiny)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check_sample.py"


def test_gpu_check_runs_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check_sample", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "report.json"
    r = mod.main(["--tiny", "--candidates", "3", "--k", "2", "--new-tokens", "4", "--prompt-tokens", "200",
                  "--device", "cpu", "--out", str(out)])
    assert out.exists() and r["sequences"] == 6
    assert 180 <= r["prompt_tokens_mean"] <= 200
    for side in ("plain_generate", "backend"):
        assert 0 < r[side]["generated_tokens"] <= 6 * 4 and r[side]["tokens_per_s"] > 0
