"""Fixtures for the sample-stage tests: run directories with a finished pool stage (the tiny model is in
tests/conftest.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from corpus.images import normalise_image, store_image
from corpus.schema import load_schema
from corpus.store import StageWriter


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""
    yield


def make_image(run_dir: Path, seed: int, size=(96, 64)) -> dict:
    """A real PNG (a few shapes), normalised and stored under run_dir/images/ as ingest does."""
    im = Image.new("RGB", size, (seed * 40 % 256, 120, 200))
    d = ImageDraw.Draw(im)
    d.rectangle([5 + seed, 5, 40 + seed, 30], fill=(255, 255 - seed * 30 % 256, 0))
    d.ellipse([50, 10, 90, 50], outline=(0, 0, 0), width=3)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return store_image(normalise_image(buf.getvalue(), max_pixels=10**7, max_bytes=10**7), run_dir)


def sample_row(i: int, *, prompt: str | None, response: str | None, request_label: str | None,
               response_label: str | None, images: list[dict] | None = None, source: str = "src") -> dict:
    images = images or []
    modality = "text" if not images else ("image" if prompt is None else "text_image")
    return {
        "id": f"row{i:04d}", "source": source, "source_split": "train", "source_id": str(i), "modality": modality,
        "prompt": prompt, "response": response, "images": images, "request_label": request_label,
        "response_label": response_label, "refusal_label": None,
        "label_origin": {"request": "gold" if request_label else None, "response": "gold" if response_label else None},
        "categories": [], "raw_categories": [], "meta": json.dumps({}),
    }


def write_pool(run_dir: Path, rows: list[dict], stage: str = "ingest", part_rows: int = 3) -> None:
    """A finished ``stage`` checkpoint (ingest: sample schema; filter: the filtered schema) holding ``rows``."""
    if stage == "filter":
        from corpus.stages.filter import filtered_schema

        schema = filtered_schema()
        rows = [{**_synth_filter_columns(r), **r} for r in rows]
    else:
        schema = load_schema("sample")
    w = StageWriter(run_dir, stage, schema, config={"test": True}, input_fingerprint="test")
    for u, start in enumerate(range(0, len(rows), part_rows)):
        w.write_unit(u, pa.Table.from_pylist(rows[start:start + part_rows], schema=schema.arrow),
                     counters={"rows_in": len(rows[start:start + part_rows])})
    w.finish()


def _synth_filter_columns(row: dict) -> dict:
    from corpus.guard_format import sft_target

    reasoning = "## Reasoning Step 1\nThe request is read."
    return {"teacher_output": reasoning + "\nAnswers:\nRequest: harmful\nResponse: None\n", "teacher_status": "ok",
            "teacher_error": None, "teacher_model": "fake", "request_key": "k" + row["id"], "prompt_tokens": 10,
            "completion_tokens": 20, "cost_usd": 0.0, "steps": ["The request is read."], "step_count": 1,
            "reasoning": reasoning,
            "sft_target": sft_target(reasoning, row["request_label"] or "harmful", row["response_label"])}


def guard_answer(request: str | None, response: str | None) -> str:
    """A guard-format answer (what a trained SFT model writes)."""
    return f"<think>\nStep 1.\n</think>\n<result>\nRequest: {request}\nResponse: {response}\n</result>"
