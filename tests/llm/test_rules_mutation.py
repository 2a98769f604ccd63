"""Rules of the teacher stage that a deliberate breakage must not survive: the cache's first answer wins,
template filling is one strict pass, image rows keep their cache key across run directories, identical
requests in flight are sent once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from cli_helpers import ROOT
from llm_helpers import API_KEY, make_image, make_row, read_rows, recipe_for, write_ingest

from corpus.llm.cache import ResponseCache
from corpus.llm.client import TeacherClient
from corpus.llm.config import SynthesizeConfig
from corpus.llm.request import ChatRequest, Outcome
from corpus.stages import synthesize
from corpus.templates import fill


def _answer(text: str) -> Outcome:
    return Outcome(status="ok", output=text, finish_reason="stop", prompt_tokens=1, completion_tokens=2)


SECOND_WRITER = """
import sys
from pathlib import Path
from corpus.llm.cache import ResponseCache
from corpus.llm.request import Outcome
c = ResponseCache(Path(sys.argv[1]))
c.put("k", "m", Outcome(status="ok", output="from another process"))
c.close()
"""


def test_cache_first_answer_for_a_key_wins_in_one_process_and_across_processes(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    cache.put("k", "m", _answer("first"))
    cache.put("k", "m", _answer("second"))
    assert cache.get("k").output == "first"
    cache.put_many([("k", "m", _answer("third")), ("j", "m", _answer("j1"))])
    assert cache.get("k").output == "first" and cache.get("j").output == "j1"
    p = subprocess.run([sys.executable, "-c", SECOND_WRITER, str(tmp_path / "cache")], capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT)}, timeout=60)
    assert p.returncode == 0, p.stderr
    cache.close()
    again = ResponseCache(tmp_path / "cache")
    assert again.get("k").output == "first" and len(again) == 2
    again.close()


def test_fill_is_one_pass_and_values_are_never_re_expanded():
    assert fill("{{a}} {{b}}", a="{{b}}", b="X") == "{{b}} X"  # a second pass would give "X X"
    assert fill("{{a}}{{a}}", a="{{a}}") == "{{a}}{{a}}"


def test_fill_rejects_unused_and_missing_values():
    with pytest.raises(KeyError, match="lacks"):
        fill("{{a}}", a="1", b="2")
    with pytest.raises(KeyError, match="no value"):
        fill("{{a}} {{b}}", a="1")


def test_fill_is_not_str_format():
    # str.format would turn "{{a}}" into "{a}", fail on "{x}" and expand "{0}"/attribute lookups
    assert fill("{x} {0} {a.__class__} {{a}}", a="1") == "{x} {0} {a.__class__} 1"
    assert fill("{{a}}", a="{} {0} {b}") == "{} {0} {b}"
    assert fill("{ {a} }} {{{a}}}", a="v") == "{ {a} }} {v}"


def _image_rows(run_dir, color) -> list[dict]:
    img = make_image(run_dir, color=color)
    return [make_row(0, prompt="what is shown?", images=[img]), make_row(1, prompt=None, images=[img])]


def test_image_rows_keep_their_cache_key_across_run_directories(tmp_path, server):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_ingest(a, _image_rows(a, (200, 30, 30)))
    write_ingest(b, _image_rows(b, (200, 30, 30)))  # the same image, stored under another run directory
    write_ingest(c, _image_rows(c, (30, 200, 30)))  # another image
    recipe = recipe_for(tmp_path, server.base_url)
    synthesize.run(recipe, a)
    assert server.total_requests == 2
    synthesize.run(recipe, b)
    assert server.total_requests == 2  # every answer from the cache: the key has no path in it
    keys_a = [r["request_key"] for r in read_rows(a)]
    assert keys_a == [r["request_key"] for r in read_rows(b)]
    assert [r["teacher_output"] for r in read_rows(a)] == [r["teacher_output"] for r in read_rows(b)]
    synthesize.run(recipe, c)
    assert server.total_requests == 4 and not set(keys_a) & {r["request_key"] for r in read_rows(c)}


def test_identical_requests_in_flight_are_sent_once(server):
    server.configure(latency=0.2)
    req = ChatRequest("m", [{"role": "user", "content": "same"}], {"temperature": 0.0})

    async def go():
        client = TeacherClient(SynthesizeConfig(model="m", base_url=server.base_url, progress=False),
                               api_key=API_KEY)
        try:
            return await asyncio.gather(*(client.complete(req) for _ in range(5))), client.stats
        finally:
            await client.close()

    outs, stats = asyncio.run(go())
    assert server.total_requests == 1 and stats["inflight_dedup"] == 4
    assert len({o.output for o in outs}) == 1 and sorted(o.source for o in outs) == ["api"] + ["inflight"] * 4
