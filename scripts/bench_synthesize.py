#!/usr/bin/env python
"""Teacher-client throughput against the local fake server with a fixed latency.

    python scripts/bench_synthesize.py [--n 2000] [--latency 0.2] [--concurrency 64 256]
                                       [--peer-python /work/bench-venv/bin/python]

The fake OpenAI server (corpus.testing.fake_openai) runs in its own process; each client runs in
its own fresh process and sends ``--n`` distinct chat requests with at most ``concurrency`` in
flight. Reported: requests/s as a ratio of the latency bound (concurrency / latency), client CPU
per request, and how many answers came back. ``--faults`` adds the issue's fault mix (5% 429, 5% 500,
3% 400, 3% malformed JSON, 5% truncated, 5% empty; 300 requests at concurrency 64), reporting rows
accounted for and answered requests sent again (counted by the server). Clients:

- ``ours``: the toolkit's full path (Runner + TeacherClient, fast transport, request journal, one durable
  cache commit per answer before the request counts as done);
- ``ours-sdk``: the same with ``transport: sdk`` (``AsyncOpenAI.chat.completions.create`` on the SDK's
  aiohttp transport);
- ``plain-openai``: a plain ``AsyncOpenAI`` + ``asyncio.Semaphore`` loop (SDK defaults);
- ``bare-aiohttp``: one aiohttp session + semaphore (what the machine allows);
- ``curator`` (bespokelabs-curator) and ``distilabel``: run with ``--peer-python`` (a separate venv,
  never the project's) when importable there, else reported as "not installed".

Peer workers import nothing from this project, so they run under another interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("ours", "ours-sdk", "plain-openai", "bare-aiohttp")
PEERS = ("curator", "distilabel")
SYSTEM = ("You are a classifier for analyzing interactions between humans and AI. Task 1: is the request harmful? "
          "Task 2: is the response harmful?\nThe ground truth is \n---\n\nAnswers: \nRequest: harmful\n"
          "Response: None\n")
MODEL = "bench-model"


def messages(i: int, nonce: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Human user:\nbench request {i} {nonce}\n\nAI assistant:\nNone\n"}]


# ------------------------------------------------------------------------------------ workers
# Each returns {"ok": answers with text, "returned": rows that came back with an answer (any finish
# reason), "failed": requests that ended in a recorded error/exception}. ``faults`` = keep the
# client's own retry defaults (the fault run) instead of switching its retries off (the speed run).
def _tally(results: list) -> dict:
    ok = sum(1 for r in results if r is True)
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return {"ok": ok, "returned": len(results) - failed, "failed": failed}


async def w_bare_aiohttp(url: str, n: int, conc: int, nonce: str, faults: bool) -> dict:
    import aiohttp

    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc),
                                     headers={"Authorization": "Bearer bench"}) as s:
        async def one(i: int) -> bool:
            async with sem:
                body = {"model": MODEL, "messages": messages(i, nonce), "temperature": 0}
                async with s.post(url + "/chat/completions", json=body) as r:
                    r.raise_for_status()
                    d = await r.json()
                    return bool(d["choices"][0]["message"]["content"])

        return _tally(await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True))


async def w_plain_openai(url: str, n: int, conc: int, nonce: str, faults: bool) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="bench")  # SDK defaults (2 retries)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> bool:
        async with sem:
            r = await client.chat.completions.create(model=MODEL, messages=messages(i, nonce), temperature=0)
            return bool(r.choices[0].message.content)

    try:
        return _tally(await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True))
    finally:
        await client.close()


async def w_ours(url: str, n: int, conc: int, nonce: str, faults: bool, transport: str = "fast") -> dict:
    from corpus.llm.cache import ResponseCache
    from corpus.llm.client import TeacherClient
    from corpus.llm.config import SynthesizeConfig
    from corpus.llm.journal import RequestJournal
    from corpus.llm.request import ChatRequest
    from corpus.llm.runner import Runner

    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthesizeConfig(model=MODEL, base_url=url, concurrency=conc, transport=transport, progress=False,
                               cache_dir=tmp, replay_caches=[], timeout=60, generation={"max_tokens": None})
        cache = ResponseCache(Path(tmp))
        journal = RequestJournal(Path(tmp) / "_requests.log")  # as the stage runs it: journal + durable cache
        client = TeacherClient(cfg, api_key="bench", journal=journal)
        runner = Runner(cfg, cache, client)
        reqs = [ChatRequest(MODEL, messages(i, nonce), cfg.generation.request_fields()) for i in range(n)]
        try:
            outs = await runner.resolve(reqs)
        finally:
            await client.close()
            cache.close()
            journal.close()
        return {"ok": sum(o.status == "ok" for o in outs), "returned": sum(o.answered for o in outs),
                "failed": sum(o.status == "failed" for o in outs)}


def w_curator(url: str, n: int, conc: int, nonce: str, faults: bool) -> dict:
    from bespokelabs import curator
    from bespokelabs.curator.request_processor.online import openai_online_request_processor as oorp

    class _CharEncoding:  # tiktoken would download cl100k_base; no network here, so ~4 chars per token
        def encode(self, text: str, **_: object) -> list[int]:
            return [0] * (len(text) // 4)

    oorp.OpenAIOnlineRequestProcessor.get_token_encoding = lambda self: _CharEncoding()

    class Teacher(curator.LLM):
        def prompt(self, row: dict) -> list[dict]:
            return messages(row["i"], nonce)

        def parse(self, row: dict, response: str) -> dict:
            return {"i": row["i"], "ok": bool(response)}

    params = {"base_url": url, "api_key": "bench", "max_concurrent_requests": conc,
              "max_requests_per_minute": 10_000_000, "max_tokens_per_minute": 10_000_000_000,
              "request_timeout": 60, "require_all_responses": False}
    if not faults:
        params["max_retries"] = 0
    llm = Teacher(model_name=MODEL, backend="openai", generation_params={"temperature": 0}, backend_params=params)
    with tempfile.TemporaryDirectory() as tmp:
        out = llm([{"i": i} for i in range(n)], working_dir=tmp)
        ds = list(getattr(out, "dataset", out))
    return {"ok": sum(1 for r in ds if r.get("ok")), "returned": len(ds), "failed": None}


async def w_distilabel(url: str, n: int, conc: int, nonce: str, faults: bool) -> dict:
    from distilabel.models import OpenAILLM

    llm = OpenAILLM(model=MODEL, base_url=url, api_key="bench", timeout=60,
                    **({} if faults else {"max_retries": 0}))
    llm.load()
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> bool:
        async with sem:
            r = await llm.agenerate(input=messages(i, nonce), temperature=0)
            gens = r.get("generations") if isinstance(r, dict) else r
            return bool(gens and gens[0])

    return _tally(await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True))


PRELOAD = {"bare-aiohttp": ["aiohttp"], "plain-openai": ["openai"], "ours": ["corpus.llm.client", "corpus.llm.runner"],
           "ours-sdk": ["corpus.llm.client", "corpus.llm.runner"], "curator": ["bespokelabs.curator"],
           "distilabel": ["distilabel.models"]}


def worker(name: str, url: str, n: int, conc: int, faults: bool) -> dict:
    import importlib

    # peers: no telemetry, no hosted viewer, no result cache, no hub (nothing outside 127.0.0.1)
    for k, v in {"CURATOR_DISABLE_CACHE": "1", "CURATOR_VIEWER": "0", "TELEMETRY_ENABLED": "false",
                 "HF_HUB_OFFLINE": "1", "DISTILABEL_LOG_LEVEL": "ERROR"}.items():
        os.environ.setdefault(k, v)

    sys.path.insert(0, str(ROOT))
    for module in PRELOAD[name]:  # imports are not timed
        importlib.import_module(module)
    nonce = f"{name}-{conc}-{time.time_ns()}"
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "curator":
        counts = w_curator(url, n, conc, nonce, faults)
    else:
        fn = {"bare-aiohttp": w_bare_aiohttp, "plain-openai": w_plain_openai, "ours": w_ours,
              "ours-sdk": lambda *a: w_ours(*a, transport="sdk"), "distilabel": w_distilabel}[name]
        counts = asyncio.run(fn(url, n, conc, nonce, faults))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"client": name, "concurrency": conc, "n": n, **counts, "wall_s": round(wall, 3),
            "rps": round(n / wall, 1), "cpu_ms_per_req": round(cpu / n * 1000, 2)}


# ------------------------------------------------------------------------------------ driver
FAULT_MIX = {"429": 0.05, "500": 0.05, "400": 0.03, "malformed": 0.03, "length": 0.05, "empty": 0.05}


def importable(python: str, module: str) -> bool:
    if not python or not Path(python).exists():
        return False
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def start_server(latency: float, fault_mix: dict | None = None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "corpus.testing.fake_openai", "--latency", str(latency), "--no-bodies"]
    if fault_mix:
        cmd += ["--fault-mix", json.dumps(fault_mix)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, line.split()[1]


def server_call(url: str, path: str, post: bool = False) -> dict:
    import urllib.request

    req = urllib.request.Request(url.rsplit("/v1", 1)[0] + path, data=b"{}" if post else None, method="POST" if post
                                 else "GET", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def run_worker(args, name: str, url: str, n: int, conc: int, faults: bool) -> dict:
    python = args.peer_python if name in PEERS else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--url", url, "--n", str(n),
           "--concurrency", str(conc)] + (["--faults"] if faults else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT) if name in OURS else ""}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"client": name, "concurrency": conc, "note": f"timed out ({args.timeout:g}s)"}
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"client": name, "concurrency": conc, "note": "crashed", "stderr": p.stderr[-1500:]}
    return json.loads(lines[-1])


def speed(args, peer_ok: dict) -> list[dict]:
    server, url = start_server(args.latency)
    results = []
    try:
        for conc in args.concurrency:
            bound = conc / args.latency
            for name in args.clients:
                if name in PEERS and not peer_ok[name]:
                    r = {"client": name, "concurrency": conc, "note": "not installed"}
                else:
                    r = run_worker(args, name, url, args.n, conc, False)
                if "rps" in r:
                    r["ratio"] = round(r["rps"] / bound, 3)
                    print(f"c={conc:<4} {name:13s} {r['rps']:8.1f} req/s  ratio {r['ratio']:.2f}  "
                          f"cpu {r['cpu_ms_per_req']:.2f} ms/req  answers {r['ok']}/{r['n']}", flush=True)
                else:
                    print(f"c={conc:<4} {name:13s} {r['note']} {r.get('stderr', '')[-300:]}", flush=True)
                results.append(r)
    finally:
        server.kill()
    print()
    print("| client | " + " | ".join(f"c={c}: ratio of bound (req/s, client CPU ms/req)" for c in args.concurrency)
          + " |")
    print("|---|" + "---|" * len(args.concurrency))
    for name in args.clients:
        cells = []
        for c in args.concurrency:
            r = next((x for x in results if x["client"] == name and x["concurrency"] == c), None)
            cells.append("-" if r is None else r.get("note")
                         or f"{r['ratio']:.2f} ({r['rps']:.0f}, {r['cpu_ms_per_req']:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return results


def faults(args, peer_ok: dict) -> list[dict]:
    n, conc = args.fault_n, 64
    server, url = start_server(args.latency, FAULT_MIX)
    results = []
    try:
        for name in [c for c in args.clients if c != "bare-aiohttp"]:
            if name in PEERS and not peer_ok[name]:
                results.append({"client": name, "note": "not installed"})
                continue
            server_call(url, "/_reset", post=True)
            r = run_worker(args, name, url, n, conc, True)
            st = server_call(url, "/_stats")
            r["paid_twice"] = sum(v - 1 for v in st["answered"].values() if v > 1)
            r["requests_sent"] = st["total_requests"]
            results.append(r)
    finally:
        server.kill()
    print(f"\nfault mix {FAULT_MIX}, {n} requests, concurrency {conc}, latency {args.latency:g}s")
    print("| client | rows back with an answer | of which text | recorded failures | unaccounted | "
          "answered requests sent again | requests sent |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "note" in r:
            print(f"| {r['client']} | {r['note']} | | | | | |")
            continue
        failed = "-" if r["failed"] is None else r["failed"]
        lost = n - r["returned"] - (r["failed"] or 0)
        print(f"| {r['client']} | {r['returned']}/{n} | {r['ok']} | {failed} | {lost} | {r['paid_twice']} | "
              f"{r['requests_sent']} |")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--clients", nargs="+", default=list(OURS + PEERS))
    ap.add_argument("--peer-python", default="/work/bench-venv/bin/python")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--faults", action="store_true", help="also run the fault-mix comparison (300 requests)")
    ap.add_argument("--fault-n", type=int, default=300)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--kill-trials", type=int, default=0,
                    help="instead: SIGKILL a real `corpus synthesize` this many times at random points (the CI "
                         "test tests/llm/test_kill9.py with more trials) and report answers sent again")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.url, args.n, args.concurrency[0], args.faults)), flush=True)
        return
    if args.kill_trials:
        test = "tests/llm/test_kill9.py::test_twenty_random_sigkills_rebuy_nothing_and_end_like_an_uninterrupted_run"
        env = {**os.environ, "CORPUS_KILL_TRIALS": str(args.kill_trials), "PYTHONPATH": str(ROOT)}
        raise SystemExit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test],
                                         cwd=ROOT, env=env))
    peer_ok = {"curator": importable(args.peer_python, "bespokelabs.curator"),
               "distilabel": importable(args.peer_python, "distilabel.models")}
    out = {"speed": speed(args, peer_ok)}
    if args.faults:
        out["faults"] = faults(args, peer_ok)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
