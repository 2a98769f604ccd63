"""Parse every real GuardReasoner-8B output in realdata and compare with the gold labels.

The agreement is the model's accuracy as read by our parser (printed; run with ``-s`` to see it). The test
fails only if the parser misses an answers block that is present, i.e. where an independent, plain reading
of the text after the last ``Answers:`` finds ``Request: harmful|unharmful`` and the parser returns
something else.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from realdata_path import REALDATA

from corpus.guard_format import parse_answers, split_answers
from corpus.reasoning import extract_steps, numbered_steps_per_task

PRED_DIR = REALDATA / "guardreasoner" / "test_predictions_8B"
FILES = sorted(PRED_DIR.glob("*.jsonl"))
pytestmark = pytest.mark.skipif(not FILES, reason="realdata predictions not present")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _plain_reading(text: str, key: str) -> str | None:
    """Independent oracle: the text after the last 'Answers' occurrence, 'Key: value' with an exact label."""
    i = text.rfind("Answers")
    if i < 0:
        return None
    m = re.search(rf"^{key}:\s*(harmful|unharmful)\s*$", text[i:], re.MULTILINE | re.IGNORECASE)
    return m.group(1).lower() if m else None


def _task_key(path: Path) -> str:
    # XSTestResponseHarmful's gold is the response label; the others are prompt-harm benchmarks
    return "response" if "Reponse" in path.name or "Response" in path.name else "request"


def test_parser_agreement_with_gold_and_no_missed_blocks():
    report, missed = [], []
    total_agree = total = 0
    for path in FILES:
        key = _task_key(path)
        agree = n = unparsed = 0
        for i, rec in enumerate(_records(path)):
            ans = parse_answers(rec["predict"])
            got = getattr(ans, key)
            plain = _plain_reading(rec["predict"], key.capitalize())
            if plain is not None and got != plain:
                missed.append((path.name, i, plain, got))
            assert ans.found, f"{path.name} line {i}: answers block not found"
            n += 1
            agree += got == rec["label"]
            unparsed += got is None
        total_agree += agree
        total += n
        report.append(f"{path.name}: {key} agreement {agree}/{n} = {agree / n:.3f}, unreadable {unparsed}")
    report.append(f"overall: {total_agree}/{total} = {total_agree / total:.3f}")
    print("\n" + "\n".join(report))
    assert not missed, f"parser missed answers blocks that are present: {missed[:5]}"
    assert total == sum(len(_records(p)) for p in FILES)


def test_unreadable_values_are_not_guessed():
    """The one real output with 'Request: ambiguous' gives None, not a guess."""
    hits = [rec for p in FILES for rec in _records(p) if re.search(r"Request: ambiguous", rec["predict"])]
    assert hits, "expected the real 'Request: ambiguous' output in AegisSafetyTest"
    assert all(parse_answers(rec["predict"]).request is None for rec in hits)


def test_step_extraction_on_real_outputs():
    """Every step heading becomes one step; tasks are numbered; per-task counts are plausible."""
    heading = re.compile(r"^#{1,4}\s*(?:Reasoning Step|Reasoning Conclusion|Conclusion|Task \d+ Conclusion)",
                         re.MULTILINE | re.IGNORECASE)
    per_task: Counter[int | None] = Counter()
    outputs = with_steps = 0
    for path in FILES:
        for rec in _records(path):
            reasoning, block = split_answers(rec["predict"])
            assert block is not None
            steps = extract_steps(reasoning)
            assert len(steps) == len(heading.findall(reasoning))
            assert all(s.kind in ("step", "conclusion") for s in steps)
            outputs += 1
            if steps:
                with_steps += 1
                assert "Answers" not in steps[-1].text
                counts = numbered_steps_per_task(steps)
                assert max(counts.values()) <= 10
                per_task.update(counts)
                assert all(s.text.strip() for s in steps if s.kind == "step")
    ordered = dict(sorted(per_task.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
    print(f"\nnumbered steps per task over {with_steps}/{outputs} outputs with steps: {ordered}")
    assert with_steps / outputs > 0.95
    assert set(per_task) >= {1, 2, 3}  # the 3-task GuardReasoner form
