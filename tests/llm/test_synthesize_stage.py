"""The synthesize stage end to end against the fake server: cache, accounting, images, braces, key hygiene."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from llm_helpers import API_KEY, make_image, make_row, read_rows, recipe_for, text_rows, write_ingest
from PIL import Image

from corpus.guard_format import guard_user_text
from corpus.schema import load_schema
from corpus.stages import synthesize
from corpus.testing import FakeOpenAI


def test_every_row_once_with_teacher_columns_and_failures_kept(tmp_path, server):
    run = tmp_path / "run"
    rows = text_rows(30)
    write_ingest(run, rows, part_rows=7)
    server.configure(script={"question 3\n": ["400"], "question 4\n": ["length"], "question 5\n": ["empty"],
                             "question 6\n": ["content_filter"]})
    m = synthesize.run(recipe_for(tmp_path, server.base_url), run)
    out = read_rows(run)
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    by_prompt = {r["prompt"]: r for r in out}
    assert by_prompt["question 3"]["teacher_status"] == "failed"
    assert by_prompt["question 3"]["teacher_error"].startswith("http_400:")
    assert by_prompt["question 4"]["teacher_status"] == "length" and by_prompt["question 4"]["teacher_output"]
    assert by_prompt["question 5"]["teacher_status"] == "empty"
    assert by_prompt["question 6"]["teacher_status"] == "content_filter"
    assert by_prompt["question 7"]["teacher_status"] == "ok" and "Answers:" in by_prompt["question 7"]["teacher_output"]
    assert m["rows_in"] == m["rows_out"] == 30 and m["parts"] == 5
    assert m["teacher"]["statuses"] == {"content_filter": 1, "empty": 1, "failed": 1, "length": 1, "ok": 26}
    assert set(out[0]) == set(load_schema("sample").extend(load_schema("synthesized")).names)


def test_second_run_makes_zero_requests_and_other_out_dirs_share_the_cache(tmp_path, server):
    rows = text_rows(20)
    for name in ("a", "b"):
        write_ingest(tmp_path / name, rows)
    recipe = recipe_for(tmp_path, server.base_url)
    synthesize.run(recipe, tmp_path / "a")
    first = server.total_requests
    assert first == 20
    again = synthesize.run(recipe, tmp_path / "a")  # skipped: manifest matches
    assert server.total_requests == first and again["output_fingerprint"]
    m = synthesize.run(recipe, tmp_path / "a", force=True)  # rerun: every answer from the cache
    assert server.total_requests == first
    assert m["teacher"]["this_attempt"]["hit:cache"] == 20 and m["teacher"]["this_attempt"]["spent_usd"] == 0
    synthesize.run(recipe, tmp_path / "b")  # a different run dir, same content
    assert server.total_requests == first
    assert [r["teacher_output"] for r in read_rows(tmp_path / "a")] == [r["teacher_output"]
                                                                        for r in read_rows(tmp_path / "b")]


def test_key_depends_on_content_and_generation_not_on_paths(tmp_path, server):
    rows = text_rows(3)
    write_ingest(tmp_path / "a", rows)
    synthesize.run(recipe_for(tmp_path, server.base_url), tmp_path / "a")
    keys = [r["request_key"] for r in read_rows(tmp_path / "a")]
    synthesize.run(recipe_for(tmp_path, server.base_url, generation={"temperature": 0.5}), tmp_path / "a")
    assert server.total_requests == 6
    assert not set(keys) & {r["request_key"] for r in read_rows(tmp_path / "a")}


def test_token_and_cost_totals(tmp_path, server):
    run = tmp_path / "run"
    write_ingest(run, text_rows(12))
    m = synthesize.run(recipe_for(tmp_path, server.base_url), run)
    out = read_rows(run)
    pt = sum(r["prompt_tokens"] for r in out)
    ct = sum(r["completion_tokens"] for r in out)
    bodies = list(server.bodies.values())
    from corpus.testing.fake_openai import default_answer, request_text

    assert pt == sum(max(1, len(request_text(b)) // 4) for b in bodies)
    assert ct == sum(max(1, len(default_answer(b)) // 4) for b in bodies)
    t = m["teacher"]
    assert (t["prompt_tokens"], t["completion_tokens"]) == (pt, ct)
    assert t["cost_usd"] == pytest.approx((pt * 2.0 + ct * 8.0) / 1e6, abs=1e-6)
    assert sum(r["cost_usd"] for r in out) == pytest.approx(t["cost_usd"], abs=1e-6)
    assert t["this_attempt"]["spent_usd"] == pytest.approx(t["cost_usd"], abs=1e-6)
    assert t["this_attempt"]["projected_usd"] == pytest.approx(t["cost_usd"], abs=1e-6)


def test_images_travel_as_downscaled_data_urls(tmp_path, server):
    run = tmp_path / "run"
    img1 = make_image(run, (250, 0, 0), (400, 300))
    img2 = make_image(run, (0, 0, 250), (50, 40))
    write_ingest(run, [make_row(0, prompt="what is this?", images=[img1, img2], response="A flag.",
                                response_label="unharmful"),
                       make_row(1, prompt=None, images=[img1], request_label="harmful")])
    synthesize.run(recipe_for(tmp_path, server.base_url, image_max_pixels=30_000), run)
    body = server.body_with("what is this?")
    user = body["messages"][1]["content"]
    assert user[0] == {"type": "text", "text": guard_user_text("what is this?", "A flag.", 2)}
    urls = [p["image_url"]["url"] for p in user[1:]]
    assert len(urls) == 2 and all(u.startswith("data:image/") for u in urls)
    decoded = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))) for u in urls]
    assert decoded[0].width * decoded[0].height <= 30_000 and decoded[0].size[0] / decoded[0].size[1] == pytest.approx(
        4 / 3, rel=0.05)
    assert decoded[1].size == (50, 40)  # already within budget
    assert abs(decoded[0].getpixel((5, 5))[0] - 250) < 10
    assert Image.open(run / img1["path"]).size == (400, 300)  # the stored original is unchanged
    image_only = server.body_with("Human user:\n<image>\n\n\nAI assistant:\nNone")
    assert image_only is not None and len(image_only["messages"][1]["content"]) == 2
    keys = {r["request_key"] for r in read_rows(run)}
    assert len(keys) == 2


def test_braces_and_template_syntax_arrive_unchanged(tmp_path, server):
    nasty = "Fill {{request_label}} and {decide} {0} %s {{ x }} \\n ${HOME} {{response_label}} }}{{"
    response = "Sure: {\"a\": {{b}}} {{decide}}"
    run = tmp_path / "run"
    write_ingest(run, [make_row(0, prompt=nasty, response=response, request_label=None, response_label=None)])
    synthesize.run(recipe_for(tmp_path, server.base_url), run)
    body = server.body_with("Fill {{request_label}}")
    assert body["messages"][1]["content"] == guard_user_text(nasty, response, 0)
    system = body["messages"][0]["content"]
    assert "Request: None\nResponse: None\n" in system
    assert "For Request, the ground truth is None" in system and "For Response, the ground truth is None" in system
    assert "{{" not in system


def test_gold_labels_and_decide_notes_in_system_prompt(tmp_path, server):
    run = tmp_path / "run"
    write_ingest(run, [make_row(0, prompt="p0", request_label="harmful"),
                       make_row(1, prompt="p1", response="r1", request_label="unharmful", response_label="harmful")])
    synthesize.run(recipe_for(tmp_path, server.base_url), run)
    s0 = server.body_with("p0\n")["messages"][0]["content"]
    s1 = server.body_with("p1\n")["messages"][0]["content"]
    assert "Request: harmful\nResponse: None\n" in s0 and "determine it by yourself" not in s0
    assert "Request: unharmful\nResponse: harmful\n" in s1
    assert "## Reasoning Step 1" in s0 and "ranging from 1 to 10" in s0


def test_api_key_never_written_or_logged(tmp_path, server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    write_ingest(run, text_rows(5))
    server.configure(script={"question 1\n": ["400"], "question 2\n": ["429", None]})
    synthesize.run(recipe_for(tmp_path, server.base_url, progress=True), run)
    assert f"Bearer {API_KEY}" in server.auth_headers  # it was used ...
    for p in tmp_path.rglob("*"):  # ... but is in no file of the run or the cache
        if p.is_file():
            assert API_KEY.encode() not in p.read_bytes(), p
    out, err = capfd.readouterr()
    assert API_KEY not in out + err + caplog.text


def test_retry_truncated_is_explicit_and_counted(tmp_path, server):
    run = tmp_path / "run"
    write_ingest(run, text_rows(4))
    server.configure(script={"question 1\n": ["length", None]})
    m = synthesize.run(recipe_for(tmp_path, server.base_url, retry_truncated=2), run)
    row = next(r for r in read_rows(run) if r["prompt"] == "question 1")
    assert row["teacher_status"] == "ok"
    assert m["counters"]["reasks"] == 1 and m["teacher"]["this_attempt"]["reask:length"] == 1
    assert server.total_requests == 5
    first_pt = max(1, len(server.body_with("question 1\n")["messages"][0]["content"]) // 4)
    assert row["prompt_tokens"] > first_pt  # both paid calls are on the row
    synthesize.run(recipe_for(tmp_path, server.base_url, retry_truncated=2), run, force=True)
    assert server.total_requests == 5  # the re-ask is cached too


def test_replay_mode_serves_only_the_cache(tmp_path):
    run = tmp_path / "run"
    rows = text_rows(6)
    write_ingest(run, rows)
    with FakeOpenAI() as srv:
        live = recipe_for(tmp_path, srv.base_url)
        write_ingest(tmp_path / "seed", rows[:3])
        synthesize.run(live, tmp_path / "seed")
    # the server is gone; replay must not try the network
    m = synthesize.run(recipe_for(tmp_path, "http://127.0.0.1:9/v1", mode="replay"), run)
    out = {r["prompt"]: r for r in read_rows(run)}
    assert [out[f"question {i}"]["teacher_status"] for i in range(6)] == ["ok"] * 3 + ["no_cached_response"] * 3
    assert out["question 5"]["teacher_error"].startswith("replay mode") and out["question 5"]["cost_usd"] == 0
    assert m["teacher"]["statuses"] == {"no_cached_response": 3, "ok": 3}


def test_replay_reads_a_shipped_jsonl_cache(tmp_path):
    run = tmp_path / "run"
    write_ingest(run, text_rows(2))
    recipe = recipe_for(tmp_path, None, mode="replay")
    from corpus.stages.synthesize import build_request

    keys = [build_request(r, recipe.synthesize, run).key for r in text_rows(2)]
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "a.jsonl").write_text(json.dumps({"key": keys[1], "model": "teacher-test", "status": "ok",
                                                 "output": "recorded", "finish_reason": "stop", "prompt_tokens": 10,
                                                 "completion_tokens": 5}) + "\n")
    synthesize.run(recipe_for(tmp_path, None, mode="replay", replay_caches=[str(shipped)]), run)
    out = {r["prompt"]: r for r in read_rows(run)}
    assert out["question 1"]["teacher_output"] == "recorded" and out["question 1"]["completion_tokens"] == 5
    assert out["question 0"]["teacher_status"] == "no_cached_response"
