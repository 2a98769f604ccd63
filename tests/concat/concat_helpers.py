"""Fixtures for the concat / rl-export tests: a finished `sample` stage built from real guard records."""

from __future__ import annotations

import hashlib
import io
import json
import re
from functools import cache
from pathlib import Path

import pyarrow as pa
from PIL import Image
from realdata_path import REALDATA as _REAL

from corpus.images import normalise_image, store_image
from corpus.recipe import parse_recipe
from corpus.schema import Schema, load_schema
from corpus.store import StageWriter, stable_hash

REALDATA = _REAL / "guardreasoner" / "benchmark"
_INPUT = re.compile(r"Human user:\n(?P<prompt>.*)\n\nAI assistant:\n(?P<response>.*)\n\n\Z", re.DOTALL)

def sampled_schema() -> Schema:
    """The sample stage's real checkpoint schema (SFT pool: sample + synthesized + filtered + sampled columns)."""
    return load_schema("sample").extend(load_schema("synthesized")).extend(load_schema("filtered")).extend(
        load_schema("sampled"))


@cache
def real_records() -> tuple[tuple[str, str | None, str, str | None], ...]:
    """(prompt, response, request_label, response_label) from real GuardReasoner benchmark files."""
    out = []
    # SafeRLHF: a response with its response-harm label; the file has no request label, so the test data
    # reuses the response label for it (any valid label serves these tests)
    for rec in json.loads((REALDATA / "0_9_safe_rlhf.first150_last150.json").read_text()):
        m = _INPUT.match(rec["input"])
        resp_label = "harmful" if "Response: harmful" in rec["output"] else "unharmful"
        out.append((m["prompt"], m["response"], resp_label, resp_label))
    # Aegis prompt-harm: no response
    for rec in json.loads((REALDATA / "0_1_AegisSafetyTest.json").read_text()):
        m = _INPUT.match(rec["input"])
        out.append((m["prompt"], None, rec["output"].strip(), None))
    return tuple(out)


def make_image(run_dir: Path, seed: int, size: tuple[int, int] | None = None, color=None) -> dict:
    """A real PNG (solid colour with a stripe), stored under run_dir/images/; returns the schema image dict."""
    h = hashlib.sha256(str(seed).encode()).digest()
    size = size or (16 + h[0] % 48, 16 + h[1] % 48)
    color = color or (h[2], h[3], h[4])
    im = Image.new("RGB", size, color)
    im.paste((255 - color[0], 255 - color[1], 255 - color[2]), (0, 0, max(1, size[0] // 4), size[1]))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return store_image(normalise_image(buf.getvalue(), max_pixels=10**8, max_bytes=10**8), run_dir)


def make_row(run_dir: Path, i: int, *, modality: str, hard: bool, n_images: int = 1, real: int | None = None,
             request_label: str | None = "keep", response_label: str | None = "keep", with_response: bool | None = None,
             origin: str = "gold") -> dict:
    recs = real_records()
    prompt, response, req, resp = recs[(real if real is not None else i) % len(recs)]
    if with_response is True and response is None:
        response, resp = "Sure, here is what I found.", "unharmful"
    if with_response is False:
        response, resp = None, None
    if request_label != "keep":
        req = request_label
    if response_label != "keep":
        resp = response_label
    images = [] if modality == "text" else [make_image(run_dir, i * 10 + k) for k in range(max(1, n_images))]
    if modality == "image":
        prompt = None
    rid = stable_hash(["test", i, modality])[:16]
    return {
        "id": rid, "source": ["aegis", "saferlhf", "spa_vl"][i % 3], "source_split": "train", "source_id": str(i),
        "modality": modality, "prompt": prompt, "response": response, "images": images,
        "request_label": req, "response_label": resp, "refusal_label": None,
        "label_origin": {"request": origin if req else None, "response": origin if resp else None},
        "categories": ["violence"] if req == "harmful" else [], "raw_categories": [], "meta": "{}",
        "teacher_output": "step one\nAnswers:\nRequest: x", "teacher_status": "ok", "teacher_error": None,
        "teacher_model": "gpt-4o", "request_key": rid, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0,
        "steps": ["step one"], "step_count": 1, "reasoning": "step one",
        "sft_target": f"<think>\nstep one\n</think>\n<result>\nRequest: {req}\nResponse: {resp}\n</result>",
        "rollouts": [{"text": "x", "request": None, "response": None, "correct": False}] * 4,
        "k": 4, "n_right": 0 if hard else 3, "hard": hard,
    }


def write_sample_stage(run_dir: Path, rows: list[dict], parts: int = 2) -> None:
    w = StageWriter(run_dir, "sample", sampled_schema(), config={"test": True}, input_fingerprint=stable_hash(rows))
    schema = sampled_schema().arrow
    size = max(1, -(-len(rows) // parts))
    chunks = [rows[k:k + size] for k in range(0, len(rows), size)] or [[]]
    for unit, chunk in enumerate(chunks):
        w.write_unit(unit, pa.Table.from_pylist(chunk, schema=schema), counters={"rows_in": len(chunk)})
    w.finish()


def mixed_rows(run_dir: Path, n: int, hard_every: int = 1, n_images: int = 1) -> list[dict]:
    mods = ["text", "image", "text_image"]
    return [make_row(run_dir, i, modality=mods[i % 3], hard=(i % hard_every == 0), n_images=n_images,
                     real=(i * 37) % len(real_records()))
            for i in range(n)]


def recipe(**concat):
    seed = concat.pop("recipe_seed", 0)
    rl = concat.pop("rl_export", {})
    return parse_recipe({"name": "test", "seed": seed, "concat": concat, "rl_export": rl})


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every data file under root (manifests and progress files excluded: they hold timings)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("_") and "_units" not in p.parts:
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
