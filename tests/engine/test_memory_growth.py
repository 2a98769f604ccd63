"""Memory is bounded by part size, not corpus size: filter, concat, rl-export and stats at 2K and 8K fat rows.

Each row carries ~20 KB of text, so a stage that held the whole corpus would grow by ~120 MB between the
two sizes (a ratio well above 1.2 on a ~250 MB process); parts hold 500 rows. Every stage runs as a
real ``python -m corpus.cli`` process with one worker; peak RSS is sampled from /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from corpus.schema import load_schema
from corpus.store import StageWriter, stable_hash

PART_ROWS = 500
FAT = 20_000  # characters of text per row


def _teacher(req: str, resp: str | None) -> str:
    filler = ("the request is examined in detail and its intent weighed against the policy " * 40)[:FAT // 4]
    return (f"# Task 1\n\n## Reasoning Step 1\n{filler}\n\n## Reasoning Step 2\nThe request is {req}.\n\n"
            f"# Task 2\n\n## Reasoning Step 1\n{filler}\n\n## Reasoning Step 2\nThe response is {resp}.\n\n"
            f"---\n\nAnswers: \nRequest: {req}\nResponse: {resp or 'None'}\n")


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        req = "harmful" if i % 2 else "unharmful"
        resp = "unharmful" if i % 3 else None
        rid = stable_hash(["mem", i])[:16]
        rows.append({
            "id": rid, "source": ["aegis", "wildguardtrain"][i % 2], "source_split": "train", "source_id": str(i),
            "modality": "text", "prompt": f"question {i} " + "x" * (FAT // 4),
            "response": ("answer " + "y" * (FAT // 4)) if resp else None, "images": [],
            "request_label": req, "response_label": resp, "refusal_label": None,
            "label_origin": {"request": "gold", "response": "gold" if resp else None}, "categories": [],
            "raw_categories": [], "meta": "{}", "teacher_output": _teacher(req, resp), "teacher_status": "ok",
            "teacher_error": None, "teacher_model": "gpt-4o", "request_key": rid, "prompt_tokens": 10,
            "completion_tokens": 5, "cost_usd": 0.0})
    return rows


def _write(run: Path, stage: str, schema, rows: list[dict]) -> None:
    w = StageWriter(run, stage, schema, config={"memory": len(rows)}, input_fingerprint="mem")
    for unit, k in enumerate(range(0, len(rows), PART_ROWS)):
        chunk = rows[k:k + PART_ROWS]
        w.write_unit(unit, pa.Table.from_pylist(chunk, schema=schema.arrow), counters={"rows_in": len(chunk)})
    w.finish()


def _peak_rss(args: list[str], env: dict) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "corpus.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.02)
    err = proc.stderr.read()
    assert proc.returncode == 0, err[-3000:]
    return peak


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_peak_rss_is_flat_from_2k_to_8k_rows(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"name": "mem", "seed": 0, "concat": {"total": 10**6, "share": 0.5,
                                                                      "part_rows": PART_ROWS}}))
    env = {**os.environ, "CORPUS_PROGRESS": "0"}
    synth = load_schema("sample").extend(load_schema("synthesized"))
    sampled = synth.extend(load_schema("sampled"))
    peaks: dict[str, list[int]] = {"filter": [], "concat": [], "rl-export": [], "stats": []}
    for n in (2000, 8000):
        run = tmp_path / f"run{n}"
        rows = _rows(n)
        _write(run, "synthesize", synth, rows)
        peaks["filter"].append(_peak_rss(["filter", str(recipe), "--out", str(run), "--workers", "1"], env))
        for r in rows:
            r.update(rollouts=[{"text": "x", "request": None, "response": None, "correct": False}] * 4, k=4,
                     n_right=0, hard=True)
        _write(run, "sample", sampled, rows)
        del rows
        peaks["concat"].append(_peak_rss(["concat", str(recipe), "--out", str(run), "--workers", "1"], env))
        peaks["rl-export"].append(_peak_rss(["rl-export", str(recipe), "--out", str(run)], env))
        peaks["stats"].append(_peak_rss(["stats", str(run)], env))
    ratios = {stage: round(hi / lo, 3) for stage, (lo, hi) in peaks.items()}
    mb = {stage: [round(p / 2**20) for p in v] for stage, v in peaks.items()}
    assert all(r <= 1.2 for r in ratios.values()), f"peak RSS ratios 8K/2K {ratios}, MB {mb}"
