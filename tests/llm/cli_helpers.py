"""Run the real ``corpus`` command line in a subprocess against a run directory and a recipe file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llm_helpers import API_KEY

ROOT = Path(__file__).resolve().parents[2]


def write_recipe(path: Path, base_url: str | None, cache_dir: Path, **synth) -> Path:
    """A recipe file with only a ``synthesize:`` section (JSON is YAML) for the test teacher."""
    cfg = {"model": "teacher-test", "base_url": base_url, "api_key_env": "TEST_TEACHER_KEY", "progress": False,
           "cache_dir": str(cache_dir), "replay_caches": [], "backoff_initial": 0.01, "backoff_max": 0.05,
           "timeout": 5.0, "prices": {"teacher-test": {"prompt": 2.0, "completion": 8.0}}, **synth}
    path.write_text(json.dumps({"name": "test", "synthesize": cfg}), encoding="utf-8")
    return path


def env(key: str = API_KEY) -> dict:
    return {**os.environ, "TEST_TEACHER_KEY": key, "PYTHONPATH": str(ROOT)}


def cli(*args: str | Path, timeout: float = 120, key: str = API_KEY) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpus.cli", *map(str, args)], env=env(key), capture_output=True,
                          text=True, timeout=timeout)


def spawn(*args: str | Path, log: Path) -> subprocess.Popen:
    fh = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "corpus.cli", *map(str, args)], env=env(), stdout=fh,
                            stderr=fh)
