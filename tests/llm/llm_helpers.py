"""Helpers and fixtures of tests/llm: a fake OpenAI server on 127.0.0.1, a run dir with a finished ingest
stage, recipes. (A module of its own, not conftest.py, so test modules can import it by name.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from corpus.images import normalise_image, store_image
from corpus.recipe import parse_recipe
from corpus.schema import load_schema
from corpus.store import StageWriter
from corpus.testing import FakeOpenAI

API_KEY = "sk-test-SECRET-4f9c2e71b3d8"


def make_row(i: int, *, prompt: str | None = "hello", response: str | None = None, images: list | None = None,
             request_label: str | None = "harmful", response_label: str | None = None) -> dict:
    modality = "text" if not images else ("image" if prompt is None else "text_image")
    return {
        "id": f"row{i:05d}", "source": "test", "source_split": "train", "source_id": str(i), "modality": modality,
        "prompt": prompt, "response": response, "images": images or [], "request_label": request_label,
        "response_label": response_label, "refusal_label": None,
        "label_origin": {"request": "gold" if request_label else None, "response": "gold" if response_label else None},
        "categories": [], "raw_categories": [], "meta": "{}",
    }


def make_image(run_dir: Path, color=(200, 30, 30), size=(64, 48)) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return store_image(normalise_image(buf.getvalue(), max_pixels=10_000_000, max_bytes=10_000_000), run_dir)


def write_ingest(run_dir: Path, rows: list[dict], part_rows: int = 1000) -> None:
    """A finished ingest stage holding ``rows`` (split into parts of ``part_rows``)."""
    schema = load_schema("sample")
    w = StageWriter(run_dir, "ingest", schema, config={"rows": len(rows), "first": rows[0]["id"] if rows else None},
                    input_fingerprint="test", force=True)
    for unit, start in enumerate(range(0, max(len(rows), 1), part_rows)):
        chunk = rows[start:start + part_rows]
        w.write_unit(unit, pa.Table.from_pylist(chunk, schema=schema.arrow), counters={"rows_in": len(chunk)})
    w.finish()


def text_rows(n: int, prefix: str = "question") -> list[dict]:
    return [make_row(i, prompt=f"{prefix} {i}", request_label="harmful" if i % 2 else "unharmful") for i in range(n)]


def recipe_for(tmp: Path, base_url: str | None, **synth) -> object:
    cfg = {"model": "teacher-test", "base_url": base_url, "api_key_env": "TEST_TEACHER_KEY", "progress": False,
           "cache_dir": str(tmp / "cache"), "backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 5.0,
           "replay_caches": [], "prices": {"teacher-test": {"prompt": 2.0, "completion": 8.0}}, **synth}
    return parse_recipe({"name": "test", "synthesize": cfg}, "test.yaml", tmp)


@pytest.fixture
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", API_KEY)
    return API_KEY


def read_rows(run_dir: Path) -> list[dict]:
    from corpus.store import StageDir

    t = StageDir(run_dir, "synthesize").read()
    return t.to_pylist() if t is not None else []


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "synthesize" / "_manifest.json").read_text())
