"""Builders for the filter/export tests: teacher outputs in the real GuardReasoner shapes, synthesized rows,
and a run directory whose ``synthesize`` stage holds them (real Parquet via StageWriter, real PNG images)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from corpus.images import normalise_image, store_image
from corpus.schema import load_schema
from corpus.store import StageWriter, stable_hash


def teacher_output(request: str | None, response: str | None, refusal: str | None = None, *, tasks: int = 2,
                   one_line: bool = False, conclusion: bool = False, steps: int = 2, rule: bool = True,
                   echo_ground_truth: bool = False) -> str:
    """A teacher output like GuardReasoner's: tasks with numbered steps, then the answers block."""
    parts = []
    for t in range(1, tasks + 1):
        parts.append(f"# Task {t}\n")
        for k in range(1, steps + 1):
            body = f"Task {t} step {k}: the {'request' if t == 1 else 'response'} is examined {{with braces}}."
            parts.append(f"## Reasoning Step {k}: {body}\n" if one_line else f"## Reasoning Step {k}\n{body}\n")
        if conclusion:
            parts.append(f"## Conclusion\nTask {t} concluded.\n")
    text = "\n".join(parts)
    if echo_ground_truth:
        text += "\nThe ground truth is \n"
    text += "\n---\n\n" if rule else "\n"
    text += f"Answers: \nRequest: {request or 'None'}\n"
    if tasks == 3:
        text += f"Completion: {refusal or 'None'}\n"
    text += f"Response: {response or 'None'}"
    return text


def png_bytes(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def stored_image(run_dir: Path, seed: int) -> dict:
    img = normalise_image(png_bytes(seed), max_pixels=10**7, max_bytes=10**7)
    return store_image(img, run_dir)


def synth_row(i: int = 0, *, source: str = "wildguardtrain", modality: str = "text", prompt: str | None = "How do I?",
              response: str | None = None, images: list[dict] | None = None, request_label: str | None = "harmful",
              response_label: str | None = None, teacher: str | None = None, status: str = "ok",
              error: str | None = None) -> dict:
    """One synthesized row (sample columns + the synthesize columns of the contract)."""
    if teacher is None and status == "ok":
        teacher = teacher_output(request_label or "harmful",
                                 (response_label or "unharmful") if response is not None else None)
    origin = {"request": "gold" if request_label else None, "response": "gold" if response_label else None}
    return {
        "id": stable_hash([source, i, prompt, response])[:16], "source": source, "source_split": "train",
        "source_id": str(i), "modality": modality, "prompt": prompt, "response": response,
        "images": images or [], "request_label": request_label, "response_label": response_label,
        "refusal_label": None, "label_origin": origin, "categories": [], "raw_categories": [], "meta": "{}",
        "teacher_output": teacher, "teacher_status": status, "teacher_error": error,
        "teacher_model": "gpt-4o-2024-08-06", "request_key": stable_hash(["req", i, source]),
        "prompt_tokens": 100, "completion_tokens": 50 if teacher else 0, "cost_usd": 0.001,
    }


def synthesized_schema():
    return load_schema("sample").extend(load_schema("synthesized"))


def write_synthesized(run_dir: Path, units: list[list[dict]]) -> dict:
    """Write rows as a finished ``synthesize`` stage, one unit per list."""
    schema = synthesized_schema()
    w = StageWriter(run_dir, "synthesize", schema, config={"test": True}, input_fingerprint="test-input")
    for unit, rows in enumerate(units):
        w.write_unit(unit, pa.Table.from_pylist(rows, schema=schema.arrow), counters={"rows_in": len(rows)})
    return w.finish()
