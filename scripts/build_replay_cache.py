#!/usr/bin/env python
"""Build the shipped teacher replay cache (corpus/samples/teacher_cache/) for the embedded default recipe.

    python scripts/build_replay_cache.py [--recipe pipelines/default.yaml] [--realdata /work/shared/realdata]
                                         [--no-scripted] [--out corpus/samples/teacher_cache]

1. Runs the ingest stage of the recipe into a temporary run dir.
2. For every ingested text row that ``corpus/samples/text_provenance.json`` maps to a line of a recorded
   GuardReasoner-8B prediction file, writes one cache entry whose answer is that line's REAL ``predict``
   text, keyed by the exact teacher request the recipe's synthesize section builds for the row
   (``recorded.jsonl``, ``origin: guardreasoner-8b-recorded``). Its labels are the 8B model's own,
   so some disagree with the gold labels, as a real teacher's sometimes do; the filter drops those.
3. Unless ``--no-scripted``: every other row whose labels are all known (image, text-image and the few
   built text rows) gets a short, openly templated answer that restates the gold labels
   (``scripted.jsonl``, ``origin: scripted-template``) so the default run exercises the multimodal path
   of the later stages. It is not model reasoning. Rows with an unknown label get no scripted entry and
   replay as ``no_cached_response``.

Usage numbers are not recorded in the source files; they are computed from lengths, the way the
toolkit's TPM limiter estimates them: prompt = ceil(characters of all text parts / 4) + 765 per
image (a 1024x1024 high-detail GPT-4o image), completion = ceil(characters of the answer / 4).
Entries are written sorted by key, so the files are deterministic. Rebuild after changing the
teacher prompts, the default recipe's synthesize section or the embedded samples.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpus.guard_format import guard_user_text  # noqa: E402
from corpus.llm.limits import IMAGE_TOKENS  # noqa: E402
from corpus.llm.request import ChatRequest  # noqa: E402
from corpus.recipe import load_recipe  # noqa: E402
from corpus.resources import samples_dir  # noqa: E402
from corpus.stages import get_stage  # noqa: E402
from corpus.stages.synthesize import build_request  # noqa: E402
from corpus.store import StageDir  # noqa: E402


def usage(req: ChatRequest, answer: str) -> tuple[int, int]:
    return math.ceil(req.text_chars() / 4) + IMAGE_TOKENS * req.image_count, math.ceil(len(answer) / 4)


def norm(text: str | None) -> str | None:
    return None if text is None else text.replace("\r\n", "\n").replace("\r", "\n").strip()


def scripted_answer(row: dict) -> str | None:
    """A templated answer restating the gold labels; None if a label is unknown (the teacher would decide)."""
    req, resp = row["request_label"], row["response_label"]
    if req is None or (row["response"] is not None and resp is None):
        return None
    n = len(row["images"])
    what = (f"{n} image(s)" + (" and a text prompt" if row["prompt"] else "")) if n else "a text prompt"
    task2 = ("There is no AI assistant response, so Task 2 has no answer."
             if row["response"] is None else f"The AI assistant's response is labelled {resp} in the source data.")
    return (
        "# Task 1\n\n"
        f"## Reasoning Step 1\nThe human user's request consists of {what}.\n\n"
        f"## Reasoning Step 2\nThe source data labels this request {req}.\n\n"
        "# Task 2\n\n"
        f"## Reasoning Step 1\n{task2}\n\n"
        f"---\n\nAnswers: \nRequest: {req}\nResponse: {resp or 'None'}\n"
    )


def entry(req: ChatRequest, answer: str, origin: str, extra: dict) -> dict:
    pt, ct = usage(req, answer)
    return {"key": req.key, "model": req.model, "status": "ok", "output": answer, "finish_reason": "stop",
            "prompt_tokens": pt, "completion_tokens": ct, "response_model": extra.pop("response_model"),
            "origin": origin, "usage": "estimated from lengths (see scripts/build_replay_cache.py)", **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the shipped teacher replay cache.")
    ap.add_argument("--recipe", type=Path, default=None, help="default: the embedded default recipe")
    ap.add_argument("--realdata", type=Path, default=None, help="root of the prediction files (default: "
                    "../shared/realdata beside the checkout, else realdata_root in text_provenance.json)")
    ap.add_argument("--out", type=Path, default=samples_dir() / "teacher_cache")
    ap.add_argument("--no-scripted", action="store_true")
    args = ap.parse_args()

    recipe = load_recipe(args.recipe)
    prov_doc = json.loads((samples_dir() / "text_provenance.json").read_text(encoding="utf-8"))
    beside = ROOT.parent / "shared" / "realdata"  # shared/ lies beside the checkout
    root = args.realdata or (beside if beside.is_dir() else Path(prov_doc["realdata_root"]))
    by_text = {(norm(p["prompt"]), norm(p["response"])): p for p in prov_doc["rows"]}
    lines: dict[str, list[str]] = {}

    recorded, scripted, skipped = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        get_stage("ingest").run(recipe, run)
        rows = StageDir(run, "ingest").read().to_pylist()
        for row in rows:
            req = build_request(row, recipe.synthesize, run)
            p = by_text.get((norm(row["prompt"]), norm(row["response"]))) if row["modality"] == "text" else None
            if p is not None:
                f = p["prediction_file"]
                if f not in lines:
                    lines[f] = (root / f).read_text(encoding="utf-8").splitlines()
                pred = json.loads(lines[f][p["line_index"]])
                if norm(guard_user_text(row["prompt"], row["response"], 0)) not in norm(pred["prompt"]):
                    raise SystemExit(f"{f}:{p['line_index']}: the recorded transcript is not row {row['id']}'s text")
                recorded.append(entry(req, pred["predict"], "guardreasoner-8b-recorded",
                                      {"response_model": "GuardReasoner-8B (recorded greedy prediction)",
                                       "prediction_file": f, "line_index": p["line_index"], "row_id": row["id"]}))
                continue
            answer = None if args.no_scripted else scripted_answer(row)
            if answer is None:
                skipped.append(row["id"])
                continue
            scripted.append(entry(req, answer, "scripted-template",
                                  {"response_model": "template (scripts/build_replay_cache.py)", "row_id": row["id"]}))

    args.out.mkdir(parents=True, exist_ok=True)
    for name, entries in (("recorded.jsonl", recorded), ("scripted.jsonl", scripted)):
        path = args.out / name
        if not entries:
            path.unlink(missing_ok=True)
            continue
        entries.sort(key=lambda e: e["key"])
        path.write_text("".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries),
                        encoding="utf-8")
    print(f"{len(recorded)} recorded, {len(scripted)} scripted, {len(skipped)} rows without an entry "
          f"({len(rows)} ingested) -> {args.out}")


if __name__ == "__main__":
    main()
