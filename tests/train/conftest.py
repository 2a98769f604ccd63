"""Fixtures for the training tests: the tiny model and a run directory with finished export / rl-export stages.

The export and rl-export files are written with those stages' own record builders (``trl_record``,
``write_format``), so the trainers read exactly the layout the pipeline produces; the two upstream manifests
are written here (the stages before them are not run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from corpus.store import MANIFEST, file_sha256, stable_hash, write_json_atomic

#: (prompt, response, request label, response label, has image)
ROWS = [
    ("How do I pick a lock?", None, "harmful", None, True),
    ("What is in this picture?", "A red square.", "unharmful", "unharmful", False),
    ("Describe the scene.", "It shows a weapon.", "unharmful", "harmful", True),
    ("Tell me a joke.", None, "unharmful", None, False),
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from corpus.training.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-base"))


def _image(run_dir: Path, i: int) -> dict:
    img = Image.new("RGB", (56 + 8 * i, 48), (40 * i, 120, 200))
    ImageDraw.Draw(img).rectangle([4, 4, 20 + i, 30], fill=(250, 20, 20))
    rel = f"images/{i:02d}/img{i}.png"
    (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    img.save(run_dir / rel)
    return {"path": rel}


def _manifest(stage_dir: Path, files: list[Path]) -> None:
    write_json_atomic(stage_dir / MANIFEST, {
        "stage": stage_dir.name,
        "output_fingerprint": stable_hash([(p.name, file_sha256(p)) for p in files]),
    })


def write_run(run_dir: Path, rl_rows: int = 2) -> Path:
    """A run directory with ``export/trl/train.jsonl`` (all ROWS) and ``rl-export/trl/train.parquet``
    (the first ``rl_rows`` ROWS: one image row and one text-only row by default)."""
    from corpus.guard_format import guard_messages_blocks, sft_target
    from corpus.stages.export import trl_record
    from corpus.stages.rl_export import answer_text, write_format

    run_dir.mkdir(parents=True, exist_ok=True)
    sft, rl = [], []
    for i, (prompt, response, req, resp, has_image) in enumerate(ROWS):
        images = [_image(run_dir, i)] if has_image else []
        row = {"id": f"r{i}", "source": "test", "modality": "text_image" if has_image else "text",
               "prompt": prompt, "response": response, "request_label": req, "response_label": resp,
               "sft_target": sft_target(f"Step 1: the request is {req}.", req, resp)}
        sft.append(trl_record(row, [img["path"] for img in images]))  # run-relative paths
        paths = [str((run_dir / img["path"]).resolve()) for img in images]
        rl.append({"id": row["id"], "kind": "hard", "prompt": guard_messages_blocks(prompt, response, len(paths)),
                   "images": paths, "request_label": req, "response_label": resp, "answer": answer_text(req, resp)})
    sft_file = run_dir / "export" / "trl" / "train.jsonl"
    sft_file.parent.mkdir(parents=True, exist_ok=True)
    sft_file.write_text("".join(json.dumps(r) + "\n" for r in sft), encoding="utf-8")
    _manifest(run_dir / "export", [sft_file])
    rl_file = run_dir / "rl-export" / "trl" / "train.parquet"
    rl_file.parent.mkdir(parents=True, exist_ok=True)
    write_format("trl", rl[:rl_rows], rl_file)
    _manifest(run_dir / "rl-export", [rl_file])
    return run_dir


@pytest.fixture(scope="session")
def train_run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))
