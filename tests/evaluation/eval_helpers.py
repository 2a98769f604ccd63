"""Helpers of tests/evaluation: the real GuardReasoner-8B predictions in their released layout, CLI runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from realdata_path import REALDATA

PRED_8B = REALDATA / "guardreasoner" / "test_predictions_8B"
BENCHMARK_DIR = REALDATA / "guardreasoner" / "benchmark"
#: what the released scorer prints on these head files (the issue's reference figures)
REFERENCE_8B = {("AegisSafetyTest", "prompt"): (150, 88.77), ("HarmBenchPrompt", "prompt"): (100, 91.89),
                ("SimpleSafetyTests", "prompt"): (100, 99.50), ("XSTestReponseHarmful", "response"): (100, 97.44)}


def released_layout(dest: Path) -> Path:
    """Copy the shared head files into ``dest/<Benchmark>/generated_predictions.jsonl`` (the released layout)."""
    for f in sorted(PRED_8B.glob("*.jsonl")):
        bench = f.name.split(".", 1)[0]
        (dest / bench).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest / bench / "generated_predictions.jsonl")
    return dest


def write_lines(dest: Path, benchmark: str, lines: list[dict]) -> Path:
    (dest / benchmark).mkdir(parents=True, exist_ok=True)
    path = dest / benchmark / "generated_predictions.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return dest


def cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpus.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def answer(request: str | None = None, response: str | None = None, completion: str | None = None,
           reasoning: str = "# Task 1\n\n## Reasoning Step 1: read it.\n") -> str:
    """A GuardReasoner-style prediction ending in its Answers block."""
    return (f"{reasoning}\n---\n\nAnswers: \nRequest: {request or 'None'}\nCompletion: {completion or 'None'}\n"
            f"Response: {response or 'None'}\n")
