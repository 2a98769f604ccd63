"""scripts/gpu_check_sample.py --vllm at toy scale on CPU: plain generate, the transformers backend and the
vllm backend (the tiny text model) on the same requests, at two sizes."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, cli_env


def test_gpu_check_with_vllm_on_cpu(tmp_path):
    out = tmp_path / "report.json"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_sample.py"), "--tiny", "--vllm",
                          "--device", "cpu", "--sizes", "8,16", "--k", "2", "--new-tokens", "8",
                          "--model-dir", str(tmp_path / "model"), "--out", str(out)],
                         env=cli_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    r = json.loads(out.read_text())
    assert [s["sequences"] for s in r["sizes"]] == [8, 16]
    for s in r["sizes"]:
        for side in ("plain_generate", "backend", "vllm"):
            assert 0 < s[side]["generated_tokens"] <= s["sequences"] * 8 and s[side]["tokens_per_s"] > 0
    print("VLLM_GPU_CHECK_CPU", json.dumps({s["sequences"]: {k: s[k]["tokens_per_s"] for k in
                                                             ("plain_generate", "backend", "vllm")}
                                            for s in r["sizes"]}), "engine_start_s", r["vllm"]["engine_start_s"])
