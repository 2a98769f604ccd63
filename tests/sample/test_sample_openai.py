"""The openai backend against the fake OpenAI server with scripted answers: correctness and the three rules."""

from __future__ import annotations

import re

import pytest
from sample_helpers import guard_answer, make_image, sample_row, write_pool

from corpus.recipe import Recipe, RecipeError, parse_recipe
from corpus.sampling.base import GenerationRequest, SamplingParams
from corpus.sampling.openai_backend import chat_requests
from corpus.stages import sample as stage
from corpus.store import StageDir
from corpus.testing.fake_openai import FakeOpenAI, request_text

K = 4
GARBAGE = "I am not sure what to say here."
H, U = "harmful", "unharmful"
# case -> (row labels, the k scripted answers as (request, response) or None for an unparsable answer)
CASES = {
    "all_right": ((H, U), [(H, U)] * 4),
    "two_right": ((H, U), [(H, U), (U, U), (H, U), (H, H)]),
    "one_right": ((U, None), [(H, None), (U, H), (None, None), None]),
    "all_wrong": ((H, H), [(U, H), (H, U), (U, U), None]),
    "unparsable": ((U, None), [None] * 4),
    "teacher_req_only": ((H, None), [(H, "None")] * 3 + [(U, "None")]),
}
EXPECTED_RIGHT = {"all_right": 4, "two_right": 2, "one_right": 1, "all_wrong": 0, "unparsable": 0,
                  "teacher_req_only": 3}
_MARK = re.compile(r"\[case:(\w+)\]")


def scripted(body: dict) -> str:
    case = _MARK.search(request_text(body)).group(1)
    answer = CASES[case][1][body["seed"] - 7]
    return GARBAGE if answer is None else guard_answer(*answer)


def _rows(run_dir):
    rows = []
    for i, (case, ((req, resp), _)) in enumerate(CASES.items()):
        has_response = resp is not None or case == "one_right"
        images = [make_image(run_dir, i)] if i % 2 else []
        rows.append(sample_row(i, prompt=f"[case:{case}] please answer {{this}}", images=images,
                               response="Sure, here it is." if has_response else None,
                               request_label=req, response_label=resp))
    return rows


def _recipe(base_url: str, rule: str = "all_wrong", **over) -> Recipe:
    sample = {"pool": "ingest", "backend": "openai", "model": "sft-model", "k": K, "seed": 7, "rule": rule,
              "unit_rows": 2, "progress": False,
              "openai": {"base_url": base_url, "concurrency": 4, "max_retries": 2, "timeout": 20}, **over}
    return Recipe.model_validate({"name": "t", "sample": sample})


@pytest.fixture
def server():
    with FakeOpenAI(answers=scripted) as srv:
        yield srv


def test_rules_on_known_patterns_and_reapply_without_generating(tmp_path, server):
    write_pool(tmp_path, _rows(tmp_path))
    m = stage.run(_recipe(server.base_url), tmp_path)
    assert server.total_requests == len(CASES) * K
    table = StageDir(tmp_path, "sample").read().to_pylist()
    got = {_MARK.search(r["prompt"]).group(1): r for r in table}
    assert {c: r["n_right"] for c, r in got.items()} == EXPECTED_RIGHT
    for case, r in got.items():
        assert r["k"] == K and len(r["rollouts"]) == K
        for ro, scripted_answer in zip(r["rollouts"], CASES[case][1]):
            if scripted_answer is None:
                assert ro["text"] == GARBAGE and ro["request"] is None and ro["correct"] is False
            else:
                assert ro["request"] == scripted_answer[0]
    assert {c for c, r in got.items() if r["hard"]} == {"all_wrong", "unparsable"}
    assert m["rule"] == "all_wrong" and m["hard_rows"] == 2 and m["rows_out"] == len(CASES)

    generated = server.total_requests
    m2 = stage.run(_recipe(server.base_url, rule="mixed"), tmp_path)
    assert server.total_requests == generated  # nothing generated again
    hard = {_MARK.search(r["prompt"]).group(1) for r in StageDir(tmp_path, "sample").read().to_pylist() if r["hard"]}
    assert hard == {"two_right", "one_right", "teacher_req_only"}
    assert m2["rule"] == "mixed" and m2["output_fingerprint"] != m["output_fingerprint"]

    m3 = stage.reapply_rule(tmp_path, "not_all_right")
    hard = {_MARK.search(r["prompt"]).group(1) for r in StageDir(tmp_path, "sample").read().to_pylist() if r["hard"]}
    assert hard == set(CASES) - {"all_right"} and m3["hard_rows"] == 5
    assert server.total_requests == generated
    s = stage.stats(tmp_path)
    assert s["rule"] == "not_all_right" and s["candidates"] == len(CASES)
    assert s["hard_by_rule"] == {"all_wrong": 2, "mixed": 3, "not_all_right": 5}
    assert sum(g["candidates"] for g in s["by_source_modality"]) == len(CASES)
    right = {j: sum(g[f"right_{j}"] for g in s["by_source_modality"]) for j in range(K + 1)}
    assert right == {j: sum(v == j for v in EXPECTED_RIGHT.values()) for j in range(K + 1)}
    # the same recipe again: skipped
    assert stage.run(_recipe(server.base_url, rule="not_all_right"), tmp_path)["output_fingerprint"] == \
        m3["output_fingerprint"]
    assert server.total_requests == generated


def test_requests_carry_guard_input_images_and_seeds(tmp_path, server):
    rows = _rows(tmp_path)
    write_pool(tmp_path, rows)
    stage.run(_recipe(server.base_url), tmp_path)
    body = server.body_with("[case:two_right]")  # row 1 has an image
    assert body["model"] == "sft-model" and body["temperature"] == 1.0 and body["top_p"] == 0.95
    system, user = body["messages"]
    assert system["role"] == "system" and "Task 1" in system["content"]
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["text", "image_url", "text"]
    assert user["content"][0]["text"] == "Human user:\n"
    assert user["content"][1]["image_url"]["url"].startswith("data:image/")
    assert user["content"][2]["text"].startswith("\n[case:two_right] please answer {this}\n\nAI assistant:\nSure")
    text_only = server.body_with("[case:all_right]")
    assert isinstance(text_only["messages"][1]["content"], str)


def test_one_request_per_answer_with_its_own_seed():
    req = GenerationRequest("x", [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    many = chat_requests(req, SamplingParams(n=4, seed=3, max_new_tokens=9), "m", 1024)
    assert [r.params for r in many] == [{"temperature": 1.0, "top_p": 0.95, "max_tokens": 9, "seed": s}
                                        for s in (3, 4, 5, 6)]
    assert len({r.key for r in many}) == 4
    with pytest.raises(ValueError, match="fanout"):
        chat_requests(req, SamplingParams(n=4, fanout="n"), "m", 1024)
    with pytest.raises(RecipeError, match="fanout n"):
        parse_recipe({"name": "t", "sample": {"backend": "openai", "model": "m", "fanout": "n"}})


def test_answer_journal_makes_a_forced_rerun_free(tmp_path, server):
    write_pool(tmp_path, _rows(tmp_path))
    recipe = _recipe(server.base_url, openai={"base_url": server.base_url, "cache_dir": str(tmp_path / "journal")})
    first = stage.run(recipe, tmp_path)
    assert server.total_requests == len(CASES) * K
    again = stage.run(recipe, tmp_path, force=True)
    assert server.total_requests == len(CASES) * K
    assert again["hard_rows"] == first["hard_rows"] == 2


def test_failed_requests_drop_the_row_and_a_rerun_retries_them(tmp_path, server):
    write_pool(tmp_path, _rows(tmp_path))
    server.configure(script={"[case:one_right]": ["400"] * 50})
    m = stage.run(_recipe(server.base_url), tmp_path)
    assert m["drop_reasons"] == {"generation_failed": 1} and m["rows_out"] == len(CASES) - 1
    dropped = StageDir(tmp_path, "sample").read("dropped").to_pylist()
    assert dropped[0]["id"] == "row0002" and "400" in dropped[0]["detail"]


def test_rows_without_labels_or_images_are_dropped_with_reason(tmp_path, server):
    rows = _rows(tmp_path)[:2]
    rows.append(sample_row(50, prompt="[case:all_right] x", response=None, request_label=None, response_label=None))
    ghost = dict(make_image(tmp_path, 9), path="images/zz/missing.png")
    rows.append(sample_row(51, prompt="[case:all_right] y", response=None, request_label=H, response_label=None,
                           images=[ghost]))
    broken = dict(make_image(tmp_path, 8), path="images/zz/broken.png")
    (tmp_path / "images" / "zz").mkdir(parents=True, exist_ok=True)
    (tmp_path / broken["path"]).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    rows.append(sample_row(52, prompt="[case:all_right] z", response=None, request_label=H, response_label=None,
                           images=[broken]))
    write_pool(tmp_path, rows)
    m = stage.run(_recipe(server.base_url), tmp_path)
    assert m["drop_reasons"] == {"image:missing": 1, "image:unreadable": 1, "no_label": 1}
    assert m["rows_out"] == 2 and server.total_requests == 2 * K
    dropped = {r["id"]: r for r in StageDir(tmp_path, "sample").read("dropped").to_pylist()}
    assert "broken.png" in dropped["row0052"]["detail"] and dropped["row0051"]["source"] == "src"


def test_sft_pool_keeps_the_filter_columns(tmp_path, server):
    write_pool(tmp_path, _rows(tmp_path), stage="filter")
    m = stage.run(_recipe(server.base_url, pool="sft"), tmp_path)
    out = StageDir(tmp_path, "sample").read()
    assert out.column_names == stage.sampled_schema("sft").names
    assert {"sft_target", "teacher_output", "rollouts", "hard"} <= set(out.column_names)
    assert m["rows_out"] == len(CASES) and m["hard_rows"] == 2


def test_resumed_run_applies_the_current_rule_to_units_written_before(tmp_path, server):
    write_pool(tmp_path, _rows(tmp_path))
    stage.run(_recipe(server.base_url, rule="all_wrong"), tmp_path)
    (tmp_path / "sample" / "_manifest.json").unlink()  # as if killed after the last unit, before finishing
    generated = server.total_requests
    m = stage.run(_recipe(server.base_url, rule="mixed"), tmp_path)
    assert server.total_requests == generated and m["timings"]["units_resumed"] == m["parts"]
    assert m["rule"] == "mixed" and m["hard_rows"] == 3
    assert sum(StageDir(tmp_path, "sample").read().column("hard").to_pylist()) == 3


def test_one_client_for_the_stage_keeps_requests_in_flight_across_units(tmp_path):
    """Units of 1 candidate x 4 answers with room for 8 in flight: a backend opened per unit never has more than
    4 requests out; the stage's single client sends the next unit while the previous one is judged."""
    rows = [sample_row(i, prompt=f"[case:all_right] q{i}", request_label=H, response_label=U,
                       response="Sure, here it is.") for i in range(6)]
    write_pool(tmp_path, rows)
    with FakeOpenAI(answers=scripted, latency=0.3) as srv:
        rec = _recipe(srv.base_url, unit_rows=1, openai={"base_url": srv.base_url, "concurrency": 8,
                                                        "max_retries": 0, "timeout": 20})
        m = stage.run(rec, tmp_path)
        assert m["rows_out"] == 6 and srv.total_answered == 6 * K
        assert srv.stats()["max_in_flight"] > K
