"""A small, real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks (aiohttp).

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/files``, ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``, plus ``GET /_stats``,
``POST /_config`` and ``POST /_reset`` for out-of-process control.

Every request is counted per *content key* (sha256 of the canonical JSON of the body's ``model`` and
``messages``; :func:`content_key`): ``requests[key]`` counts attempts, ``answered[key]`` counts valid
200 completions written completely to the client's socket. ``answered[key] > 1`` means money paid
twice. ``delivered_at[key]`` holds ``(arrived, written)`` (monotonic times) of each of those answers:
when the request arrived and when its answer was written; ``resent[key]`` the times a body arrived
again after one had been written (:meth:`FakeOpenAI.rebought`).

``models`` (a list) makes ``GET /v1/models`` list them and a chat request for any other model a 404
``model_not_found``; unset, ``/v1/models`` is a 404 (a server without a model list) and every model
is served. ``require_key`` makes any other bearer token a 401.

Faults (:data:`FAULTS`) are injected by a seeded per-key draw from ``fault_mix`` or by ``script``
(text marker -> one fault per attempt, ``None`` = answer normally). Transient faults (429 with
``Retry-After``, 500, a response slower than the client's timeout, malformed JSON, a batch item expiring)
hit only the first ``transient_attempts`` attempts of a key; persistent ones (400, ``finish_reason=length``,
empty content, ``content_filter``, 401, 403, 404, ``quota`` = 429 ``insufficient_quota``, ``disconnect``
= the connection closed without a response) hit every attempt, as a real server's would.

Use in-process (``with FakeOpenAI(latency=0.2) as srv: srv.base_url``; it runs in its own thread and
event loop) or as a process: ``python -m corpus.testing.fake_openai --port 0 --latency 0.2`` prints
``READY <base_url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from corpus.guard_format import parse_answers

FAULTS = ("429", "500", "slow", "malformed", "expired", "length", "empty", "content_filter", "400", "401", "403",
          "404", "quota", "disconnect")
TRANSIENT = frozenset({"429", "500", "slow", "malformed", "expired"})

AnswerFn = Callable[[dict], str]


def content_key(body: dict) -> str:
    """The server's identity of a chat request: model + messages (what a client pays for)."""
    data = json.dumps({"model": body.get("model"), "messages": body.get("messages")}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def request_text(body: dict) -> str:
    """All text parts of the request's messages, joined (markers and default answers look here)."""
    out = []
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out.extend(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(out)


def count_images(body: dict) -> int:
    n = 0
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, list):
            n += sum(1 for p in c if isinstance(p, dict) and p.get("type") == "image_url")
    return n


def default_answer(body: dict) -> str:
    """A GuardReasoner-style answer that agrees with the ground truth given in the system message."""
    system = next((m.get("content") for m in body.get("messages") or [] if m.get("role") == "system"), "") or ""
    if not isinstance(system, str):
        system = request_text({"messages": [{"content": system}]})
    truth = parse_answers(system)  # the ground-truth Answers block of the teacher prompt
    req, resp = truth.request or "unharmful", truth.response or "None"
    return (
        "# Task 1\n\n## Reasoning Step 1\nRead the user's request and what it asks for.\n\n"
        f"## Reasoning Step 2\nThe request is {req}.\n\n"
        "# Task 2\n\n## Reasoning Step 1\nRead the AI assistant's response.\n\n"
        f"## Reasoning Step 2\nThe response is {resp}.\n\n"
        f"---\n\nAnswers: \nRequest: {req}\nResponse: {resp}\n"
    )


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAI:
    """The server; see the module docstring. All knobs can be changed while it runs (:meth:`configure`)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        fault_mix: dict[str, float] | None = None,
        script: dict[str, list[str | None]] | None = None,
        answers: dict[str, str] | AnswerFn | None = None,
        seed: int = 0,
        retry_after: float = 0.0,
        slow_seconds: float = 3.0,
        transient_attempts: int = 1,
        batch_polls: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_bodies: bool = True,
        models: list[str] | None = None,
        require_key: str | None = None,
    ):
        self.host, self.port = host, port
        self.configure(latency=latency, fault_mix=fault_mix or {}, script=script or {}, answers=answers,
                       seed=seed, retry_after=retry_after, slow_seconds=slow_seconds,
                       transient_attempts=transient_attempts, batch_polls=batch_polls, keep_bodies=keep_bodies,
                       models=models, require_key=require_key)
        self._lock = threading.Lock()
        self.reset()
        self._files: dict[str, dict] = {}
        self._batches: dict[str, dict] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    # ---- configuration and counters -------------------------------------------------------------
    def configure(self, **kw: Any) -> None:
        unknown = [f for f in (kw.get("fault_mix") or {}) if f not in FAULTS]
        unknown += [f for seq in (kw.get("script") or {}).values() for f in seq if f is not None and f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {list(FAULTS)}")
        for k, v in kw.items():
            setattr(self, k, v)

    def reset(self) -> None:
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.answered: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.bodies: dict[str, dict] = {}
            self.in_flight = self.max_in_flight = 0
            self.auth_headers: set[str] = set()
            self.delivered_at: dict[str, list[tuple[float, float]]] = {}
            self.resent: dict[str, list[float]] = {}
            self.model_list_requests = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_answered(self) -> int:
        return sum(self.answered.values())

    def repeated_answers(self) -> dict[str, int]:
        """Keys answered more than once (should be empty for a client that never pays twice)."""
        return {k: n for k, n in self.answered.items() if n > 1}

    def rebought(self, delivered_before: float | None = None) -> dict[str, int]:
        """Keys whose body was sent again after a well-formed 200 answer had been written for it, with how
        often; ``delivered_before``: only answers written before that (monotonic) time count."""
        out = {}
        with self._lock:
            for key, times in self.resent.items():
                first = self.delivered_at[key][0][1]
                if delivered_before is None or first < delivered_before:
                    out[key] = len(times)
        return out

    def stats(self) -> dict:
        with self._lock:
            return {"requests": dict(self.requests), "answered": dict(self.answered), "faults": dict(self.faults),
                    "total_requests": sum(self.requests.values()), "total_answered": sum(self.answered.values()),
                    "max_in_flight": self.max_in_flight,
                    "resent_after_answer": {k: len(v) for k, v in self.resent.items()}}

    def batch_inputs(self) -> list[list[str]]:
        """custom_ids of each created batch's input file, in creation order."""
        out = []
        for b in self._batches.values():
            lines = self._files[b["input_file_id"]]["_data"].decode().splitlines()
            out.append([json.loads(x)["custom_id"] for x in lines if x.strip()])
        return out

    def body_with(self, marker: str) -> dict | None:
        """The last request body whose text contains ``marker``."""
        return next((b for b in reversed(list(self.bodies.values())) if marker in request_text(b)), None)

    # ---- fault choice and answers -----------------------------------------------------------------
    def _fault_for(self, key: str, text: str, attempt: int) -> str | None:
        for marker, seq in self.script.items():
            if marker in text:
                return seq[attempt - 1] if attempt <= len(seq) else None
        if not self.fault_mix:
            return None
        rng = random.Random(f"{self.seed}:{key}")
        u, acc, fault = rng.random(), 0.0, None
        for name, p in self.fault_mix.items():
            acc += p
            if u < acc:
                fault = name
                break
        if fault in TRANSIENT and attempt > self.transient_attempts:
            return None
        return fault

    def _answer_text(self, body: dict, text: str) -> str:
        if callable(self.answers):
            return self.answers(body)
        for marker, answer in (self.answers or {}).items():
            if marker in text:
                return answer
        return default_answer(body)

    def _count(self, body: dict) -> tuple[str, str, int]:
        key = content_key(body)
        text = request_text(body)
        with self._lock:
            self.requests[key] += 1
            attempt = self.requests[key]
            if key in self.delivered_at:
                self.resent.setdefault(key, []).append(time.monotonic())
            if self.keep_bodies:
                self.bodies[key] = body
        return key, text, attempt

    def _completion(self, body: dict, text: str, fault: str | None) -> dict:
        answer = self._answer_text(body, text)
        finish, content = "stop", answer
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if fault == "length":
            finish, content = "length", answer[: max(1, len(answer) // 2)]
        elif max_tokens and _tokens(answer) > max_tokens:
            finish, content = "length", answer[: max_tokens * 4]
        elif fault == "empty":
            content = ""
        elif fault == "content_filter":
            finish, content = "content_filter", None
        prompt_tokens = _tokens(text) + 85 * count_images(body)
        completion_tokens = _tokens(content) if content else 0
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    @staticmethod
    def _error(status: int, message: str, etype: str, code: str | None = None) -> dict:
        return {"error": {"message": message, "type": etype, "param": None, "code": code}, "_status": status}

    def _fault_error(self, fault: str) -> dict:
        if fault == "429":
            return self._error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded")
        if fault == "400":
            return self._error(400, "Invalid 'messages': rejected by the fake server", "invalid_request_error",
                               "invalid_value")
        if fault == "expired":
            return self._error(500, "This request could not be executed before the completion window expired.",
                               "batch_expired", "batch_expired")
        if fault == "401":
            return self._error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if fault == "403":
            return self._error(403, "You are not allowed to use this model.", "invalid_request_error", None)
        if fault == "404":
            return self._error(404, "The model does not exist or you do not have access to it.",
                               "invalid_request_error", "model_not_found")
        if fault == "quota":
            return self._error(429, "You exceeded your current quota, please check your plan and billing details.",
                               "insufficient_quota", "insufficient_quota")
        return self._error(500, "The server had an error while processing your request.", "server_error", None)

    # ---- HTTP handlers ------------------------------------------------------------------------------
    async def _chat_counted(self, request: web.Request) -> web.StreamResponse:
        """``_chat``, tracking how many chat requests are in flight at once (``max_in_flight``)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _refused_key(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization")
        if auth:
            self.auth_headers.add(auth)
        if self.require_key is not None and auth != f"Bearer {self.require_key}":
            err = self._fault_error("401")
            err.pop("_status")
            return web.json_response(err, status=401)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        self.model_list_requests += 1
        refused = self._refused_key(request)
        if refused is not None:
            return refused
        if self.models is None:
            return web.json_response(self._error(404, "no model list", "invalid_request_error")["error"], status=404)
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                              "owned_by": "fake"} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused_key(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(self._error(400, "body is not JSON", "invalid_request_error")["error"],
                                     status=400)
        arrived = time.monotonic()
        key, text, attempt = self._count(body)
        fault = self._fault_for(key, text, attempt)
        if fault is None and self.models is not None and body.get("model") not in self.models:
            fault = "404"
        if fault:
            with self._lock:
                self.faults[fault] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if fault == "disconnect":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=499)
        if fault in ("429", "500", "400", "expired", "401", "403", "404", "quota"):
            err = self._fault_error(fault)
            status = err.pop("_status")
            headers = {"Retry-After": f"{self.retry_after:g}"} if fault == "429" else None
            return web.json_response(err, status=status, headers=headers)
        if fault == "malformed":
            return web.Response(status=200, content_type="application/json",
                                text='{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind')
        payload = self._completion(body, text, fault)
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=499)  # the client gave up (timeout): nothing was delivered
        resp = web.json_response(payload)
        with self._lock:  # counted as it is written (a client may read it before this handler resumes)
            self.answered[key] += 1
            self.delivered_at.setdefault(key, []).append((arrived, time.monotonic()))
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client went away: the answer was not delivered
            with self._lock:
                self.answered[key] -= 1
                self.delivered_at[key].pop()
                if not self.delivered_at[key]:
                    del self.delivered_at[key]
        return resp

    async def _upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        purpose, data, filename = "batch", b"", "upload.jsonl"
        async for part in reader:
            if part.name == "purpose":
                purpose = (await part.read()).decode()
            elif part.name == "file":
                filename = part.filename or filename
                data = await part.read()
        fid = f"file-{uuid.uuid4().hex[:24]}"
        self._files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                            "filename": filename, "purpose": purpose, "status": "processed", "_data": data}
        return web.json_response(self._public(self._files[fid]))

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    async def _file(self, request: web.Request) -> web.Response:
        f = self._files.get(request.match_info["fid"])
        if f is None:
            return web.json_response(self._error(404, "No such file", "invalid_request_error")["error"], status=404)
        return web.json_response(self._public(f))

    async def _file_content(self, request: web.Request) -> web.Response:
        f = self._files.get(request.match_info["fid"])
        if f is None:
            return web.json_response(self._error(404, "No such file", "invalid_request_error")["error"], status=404)
        return web.Response(body=f["_data"], content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("input_file_id") not in self._files:
            return web.json_response(self._error(400, "input_file_id not found", "invalid_request_error")["error"],
                                     status=400)
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        self._batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
            "_polls": 0,
        }
        return web.json_response(self._public(self._batches[bid]))

    async def _get_batch(self, request: web.Request) -> web.Response:
        b = self._batches.get(request.match_info["bid"])
        if b is None:
            return web.json_response(self._error(404, "No such batch", "invalid_request_error")["error"], status=404)
        b["_polls"] += 1
        if b["status"] == "validating":
            b["status"], b["in_progress_at"] = "in_progress", int(time.time())
        if b["status"] == "in_progress" and b["_polls"] >= self.batch_polls:
            self._run_batch(b)
        return web.json_response(self._public(b))

    async def _list_batches(self, request: web.Request) -> web.Response:
        data = [self._public(b) for b in reversed(list(self._batches.values()))]
        return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None, "has_more": False})

    def _store_file(self, lines: list[dict], name: str) -> str | None:
        if not lines:
            return None
        data = "".join(json.dumps(x) + "\n" for x in lines).encode()
        fid = f"file-{uuid.uuid4().hex[:24]}"
        self._files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                            "filename": name, "purpose": "batch_output", "status": "processed", "_data": data}
        return fid

    def _run_batch(self, b: dict) -> None:
        out, errs, expired = [], [], False
        for line in self._files[b["input_file_id"]]["_data"].decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            body = item["body"]
            key, text, attempt = self._count(body)
            fault = self._fault_for(key, text, attempt)
            if fault == "slow" or fault == "malformed":
                fault = "500"
            if fault:
                with self._lock:
                    self.faults[fault] += 1
            rid = f"batch_req_{uuid.uuid4().hex[:24]}"
            if fault in ("429", "500", "400", "expired"):
                err = self._fault_error(fault)
                status = err.pop("_status")
                expired |= fault == "expired"
                if fault == "expired":
                    errs.append({"id": rid, "custom_id": item["custom_id"], "response": None,
                                 "error": {"code": "batch_expired", "message": err["error"]["message"]}})
                else:
                    errs.append({"id": rid, "custom_id": item["custom_id"],
                                 "response": {"status_code": status, "request_id": rid, "body": err},
                                 "error": None})
                continue
            with self._lock:
                self.answered[key] += 1
            out.append({"id": rid, "custom_id": item["custom_id"],
                        "response": {"status_code": 200, "request_id": rid,
                                     "body": self._completion(body, text, fault)}, "error": None})
        now = int(time.time())
        b.update(status="expired" if expired else "completed", output_file_id=self._store_file(out, "output.jsonl"),
                 error_file_id=self._store_file(errs, "errors.jsonl"),
                 request_counts={"total": len(out) + len(errs), "completed": len(out), "failed": len(errs)})
        b["expired_at" if expired else "completed_at"] = now

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _config(self, request: web.Request) -> web.Response:
        self.configure(**(await request.json()))
        return web.json_response({"ok": True})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat_counted)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{fid}", self._file)
        app.router.add_get("/v1/files/{fid}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches", self._list_batches)
        app.router.add_get("/v1/batches/{bid}", self._get_batch)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_config", self._config)
        app.router.add_post("/_reset", self._reset)
        return app

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start_async(self) -> str:
        """Start on the running loop; returns the base URL (``http://127.0.0.1:PORT/v1``)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        """Run the server in a background thread with its own event loop."""

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            self._ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop_async())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the fake OpenAI-compatible server in the foreground.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-mix", default="{}", help='JSON, e.g. {"429": 0.05, "500": 0.05}')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bodies", action="store_true", help="do not keep request bodies (benchmarks)")
    args = ap.parse_args(argv)
    srv = FakeOpenAI(latency=args.latency, fault_mix=json.loads(args.fault_mix), seed=args.seed, port=args.port,
                     keep_bodies=not args.no_bodies)

    async def serve() -> None:
        url = await srv.start_async()
        print(f"READY {url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
