"""One real default run (`python -m corpus.cli run`) shared by the report tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class DefaultRun:
    out: Path
    stdout: str
    stderr: str
    env: dict


def cli(*args: str, env: dict | None = None, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "corpus.cli", *args], capture_output=True, text=True, env=env,
                         timeout=timeout)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(*args, env=None, check=True)``: ``python -m corpus.cli ARGS`` in a real subprocess."""
    return cli


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> DefaultRun:
    """`corpus run` on the embedded default recipe, every stage, with a private teacher cache."""
    base = tmp_path_factory.mktemp("report-run")
    env = {**os.environ, "CORPUS_CACHE_DIR": str(base / "cache")}
    env.pop("OPENAI_API_KEY", None)
    out = base / "run"
    res = cli("run", "--out", str(out), env=env, timeout=1200)
    return DefaultRun(out, res.stdout, res.stderr, env)
