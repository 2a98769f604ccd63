"""The teacher client against the fake server: retries and their limits, failure records, statuses."""

from __future__ import annotations

import asyncio
import time

import pytest
from llm_helpers import API_KEY

from corpus.llm.client import ClientConfigError, TeacherClient, api_key_from_env
from corpus.llm.config import SynthesizeConfig
from corpus.llm.limits import TokenBucket
from corpus.llm.request import ChatRequest
from corpus.testing import FakeOpenAI, content_key


def cfg(srv: FakeOpenAI, **kw) -> SynthesizeConfig:
    base = {"model": "m", "base_url": srv.base_url, "backoff_initial": 0.01, "backoff_max": 2.0, "timeout": 5.0,
            "max_retries": 3, "progress": False}
    return SynthesizeConfig(**{**base, **kw})


def req(text: str) -> ChatRequest:
    return ChatRequest("m", [{"role": "system", "content": "sys"}, {"role": "user", "content": text}],
                       {"temperature": 0.0})


def complete(c: SynthesizeConfig, *reqs: ChatRequest, key: str = API_KEY):
    async def go():
        client = TeacherClient(c, api_key=key)
        try:
            return await asyncio.gather(*(client.complete(r) for r in reqs)), client.stats
        finally:
            await client.close()

    return asyncio.run(go())


def key_of(r: ChatRequest) -> str:
    return content_key(r.body(lambda p, n: ""))


@pytest.mark.parametrize("fault", ["429", "500", "malformed"])
def test_transient_faults_are_retried_until_answered(fault):
    with FakeOpenAI(script={"MARK": [fault, fault, None]}) as srv:
        r = req("MARK please")
        [o], stats = complete(cfg(srv), r)
        assert o.status == "ok" and o.output and o.attempts == 3
        assert srv.requests[key_of(r)] == 3 and srv.answered[key_of(r)] == 1
        assert stats["retries"] == 2


def test_retry_after_is_honoured():
    with FakeOpenAI(script={"MARK": ["429", "429", None]}, retry_after=0.4) as srv:
        t = time.monotonic()
        [o], _ = complete(cfg(srv), req("MARK"))
        assert o.status == "ok"
        assert time.monotonic() - t >= 0.8  # two waits of the server's Retry-After, not the 10 ms backoff


def test_retry_limit_gives_a_failure_record():
    with FakeOpenAI(script={"MARK": ["500"] * 10}) as srv:
        r = req("MARK")
        [o], stats = complete(cfg(srv, max_retries=2), r)
        assert o.status == "failed" and o.output is None
        assert o.error.startswith("http_500:") and "server had an error" in o.error
        assert srv.requests[key_of(r)] == 3 and stats["failed:http_500"] == 1


@pytest.mark.parametrize("fault", ["400"])
def test_client_errors_are_not_retried(fault):
    with FakeOpenAI(script={"MARK": [fault] * 5}) as srv:
        r = req("MARK")
        [o], _ = complete(cfg(srv), r)
        assert o.status == "failed" and o.error.startswith("http_400:") and "Invalid 'messages'" in o.error
        assert srv.requests[key_of(r)] == 1


def test_timeout_is_retried():
    with FakeOpenAI(script={"MARK": ["slow", None]}, slow_seconds=1.5) as srv:
        r = req("MARK")
        [o], stats = complete(cfg(srv, timeout=0.3), r)
        assert o.status == "ok" and stats["retry:timeout"] == 1
        assert srv.requests[key_of(r)] == 2 and srv.answered[key_of(r)] == 1


def test_connection_error_is_a_failure_after_retries():
    # below the circuit breaker's limit (8 consecutive) and without the preflight check: a row failure
    c = SynthesizeConfig(model="m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_initial=0.01,
                         timeout=2.0, preflight=False)
    [o], stats = complete(c, req("x"))
    assert o.status == "failed" and o.error.startswith("connection:") and stats["retries"] == 1


@pytest.mark.parametrize(("fault", "status"), [("length", "length"), ("empty", "empty"),
                                                ("content_filter", "content_filter")])
def test_incomplete_answers_are_kept_with_their_status_and_not_reasked(fault, status):
    with FakeOpenAI(script={"MARK": [fault] * 3}) as srv:
        r = req("MARK")
        [o], _ = complete(cfg(srv), r)
        assert o.status == status and o.error is None
        assert o.prompt_tokens > 0
        assert srv.requests[key_of(r)] == 1
        if status == "length":
            assert o.output and o.finish_reason == "length"


def test_sdk_transport_gives_the_same_outcomes():
    with FakeOpenAI(script={"A": ["429", None], "B": ["400"], "C": ["length"]}) as srv:
        outs, stats = complete(cfg(srv, transport="sdk"), req("A"), req("B"), req("C"), req("D"))
        assert [o.status for o in outs] == ["ok", "failed", "length", "ok"]
        assert outs[1].error.startswith("http_400:") and stats["retry:http_429"] == 1


def test_missing_image_is_a_failure_not_a_crash(tmp_path):
    with FakeOpenAI() as srv:
        r = ChatRequest("m", [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                          {"type": "image", "sha256": "ab",
                                                           "path": tmp_path / "gone.png"}]}])
        [o], _ = complete(cfg(srv), r)
        assert o.status == "failed" and "request build failed" in o.error and srv.total_requests == 0


def test_key_scrubbed_from_errors_and_required_for_openai(monkeypatch):
    with FakeOpenAI(answers=lambda body: "x") as srv:
        srv.configure(script={"MARK": ["400"]})
        [o], _ = complete(cfg(srv), req("MARK"))
        assert API_KEY not in o.error
        assert f"Bearer {API_KEY}" in srv.auth_headers
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ClientConfigError, match="OPENAI_API_KEY"):
        api_key_from_env(SynthesizeConfig())
    assert api_key_from_env(SynthesizeConfig(base_url="http://127.0.0.1:8000/v1")) == "EMPTY"


def test_rpm_bucket_waits_when_empty():
    async def go():
        b = TokenBucket(600)  # 10 per second, burst 600
        for _ in range(600):
            await b.acquire()
        t = time.monotonic()
        for _ in range(3):
            await b.acquire()
        return time.monotonic() - t

    assert 0.2 <= asyncio.run(go()) < 1.0


def test_tpm_limit_paces_requests():
    with FakeOpenAI() as srv:
        # each request is estimated at chars/4 (0 here) + max_tokens (60) tokens; 6000 TPM = 100 tokens/s
        c = cfg(srv, tpm=6000, generation={"max_tokens": 60})
        reqs = [ChatRequest("m", [{"role": "user", "content": f"q{i}"}], c.generation.request_fields())
                for i in range(105)]
        t = time.monotonic()
        outs, _ = complete(c, *reqs)
        assert all(o.status in ("ok", "length") for o in outs)
        # 105 requests * 60 estimated tokens = 6300 > the 6000 burst: ~3 s of waiting for the last ones
        assert time.monotonic() - t >= 2.0
