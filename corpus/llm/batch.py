"""OpenAI Batch API mode: write the batch JSONL, upload, submit, poll, collect into the cache.

State lives in ``<stage dir>/_batches/state.json`` and is rewritten (atomically) after every step,
so a rerun resumes polling the batches it already submitted instead of submitting them again. A
submission is recorded with its uploaded file *before* the batch is created and tagged with a
submission id in the batch metadata; a crash between the two is recovered by finding the batch by
that tag. ``custom_id`` is the request's cache key. Items that fail transiently (5xx, 429, expired,
missing from the output) are resubmitted alone in a new batch, up to ``batch_rounds`` submissions
per item; 4xx items are final failures. Answers of every finish reason go to the cache; re-asks of
``length``/``empty`` answers (when the recipe asks for them) are submitted as further items.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from pathlib import Path

import openai

from corpus.llm.cache import ResponseCache
from corpus.llm.client import api_key_from_env
from corpus.llm.config import SynthesizeConfig
from corpus.llm.request import ChatRequest, answer_outcome
from corpus.llm.retry import scrub
from corpus.llm.transport import check_completion
from corpus.store import write_json_atomic

log = logging.getLogger(__name__)
ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class BatchRunner:
    def __init__(self, cfg: SynthesizeConfig, cache: ResponseCache, state_dir: Path, api_key: str | None = None,
                 data_url=None):
        self.cfg, self.cache, self.dir = cfg, cache, Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = api_key if api_key is not None else api_key_from_env(cfg)
        self._data_url = data_url
        self.state_path = self.dir / "state.json"
        self.state = (json.loads(self.state_path.read_text(encoding="utf-8")) if self.state_path.exists()
                      else {"submissions": [], "attempts": {}, "errors": {}, "final": []})
        self.stats: Counter[str] = Counter()

    # ---- public ---------------------------------------------------------------------------------
    def run(self, reqs: list[ChatRequest]) -> dict[str, str]:
        """Bring every request's answer into the cache; return {key: error} for those that have none."""
        return asyncio.run(self._run(reqs))

    def summary(self) -> dict:
        subs = self.state["submissions"]
        return {"submissions": len(subs), "batch_ids": [s.get("batch_id") for s in subs],
                "final_failures": len(self.state["final"]), **dict(sorted(self.stats.items()))}

    # ---- internals ------------------------------------------------------------------------------
    def _save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def _wanted(self, reqs: list[ChatRequest]) -> dict[str, ChatRequest]:
        """Requests whose answer (or next re-ask) is not in the cache and may still be asked."""
        final = set(self.state["final"])
        out: dict[str, ChatRequest] = {}
        for base in {r.key: r for r in reqs}.values():
            req, n = base, 0
            while True:
                o = self.cache.get(req.key)
                if o is None:
                    if req.key not in final and self.state["attempts"].get(req.key, 0) < self.cfg.batch_rounds:
                        out[req.key] = req
                    break
                if n >= self.cfg.reask_limit(o.status):
                    break
                n += 1
                req = base.again(n)
        return out

    async def _run(self, reqs: list[ChatRequest]) -> dict[str, str]:
        from corpus.llm.client import _default_data_url

        data_url = self._data_url or _default_data_url
        # few, large calls: the SDK's own client and retries (5) are right here
        sdk = openai.AsyncOpenAI(api_key=self._key, base_url=self.cfg.base_url, max_retries=5,
                                 timeout=max(self.cfg.timeout, 300.0))
        try:
            await self._resume(sdk)
            while True:
                wanted = self._wanted(reqs)
                if not wanted:
                    break
                batch_ids = []
                items = list(wanted.values())
                for i in range(0, len(items), self.cfg.batch_max_requests):
                    batch_ids.append(await self._submit(sdk, items[i:i + self.cfg.batch_max_requests], data_url))
                for sub in self.state["submissions"]:
                    if sub.get("batch_id") in batch_ids:
                        await self._finish(sdk, sub)
        finally:
            await sdk.close()
        errors = self.state["errors"]
        return {r.key: errors.get(r.key, "batch: no answer") for r in reqs if self.cache.get(r.key) is None}

    async def _resume(self, sdk: openai.AsyncOpenAI) -> None:
        for sub in self.state["submissions"]:
            if sub.get("collected"):
                continue
            if not sub.get("batch_id"):
                found = await self._find_batch(sdk, sub["submission"], sub["submitted"])
                if found is None:
                    batch = await sdk.batches.create(input_file_id=sub["input_file_id"], endpoint=ENDPOINT,
                                                     completion_window=self.cfg.batch_completion_window,
                                                     metadata={"corpus_submission": sub["submission"]})
                    found = batch.id
                sub["batch_id"] = found
                self._save()
            self.stats["resumed_batches"] += 1
            log.info("synthesize: resuming batch %s", sub["batch_id"])
            await self._finish(sdk, sub)

    async def _find_batch(self, sdk: openai.AsyncOpenAI, submission: str, submitted: float) -> str | None:
        """The batch tagged with ``submission``, looking back (newest first) to a day before it was recorded.
        A failing list call raises: creating the batch again on a guess could pay for it twice."""
        async for b in sdk.batches.list(limit=100):
            if (b.metadata or {}).get("corpus_submission") == submission:
                return b.id
            if b.created_at < submitted - 86400:
                break
        return None

    async def _submit(self, sdk: openai.AsyncOpenAI, items: list[ChatRequest], data_url) -> str:
        submission = uuid.uuid4().hex
        path = self.dir / f"input-{len(self.state['submissions']):04d}.jsonl"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for req in items:
                line = {"custom_id": req.key, "method": "POST", "url": ENDPOINT, "body": req.body(data_url)}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        tmp.replace(path)
        with path.open("rb") as f:
            uploaded = await sdk.files.create(file=(path.name, f.read()), purpose="batch")
        sub = {"submission": submission, "input": path.name, "input_file_id": uploaded.id,
               "keys": [r.key for r in items], "models": {r.key: r.model for r in items}, "batch_id": None,
               "submitted": time.time(), "collected": False}
        self.state["submissions"].append(sub)
        for r in items:
            self.state["attempts"][r.key] = self.state["attempts"].get(r.key, 0) + 1
        self._save()
        batch = await sdk.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT,
                                         completion_window=self.cfg.batch_completion_window,
                                         metadata={"corpus_submission": submission})
        sub["batch_id"] = batch.id
        self._save()
        self.stats["submitted_items"] += len(items)
        log.info("synthesize: submitted batch %s (%d requests, %s)", batch.id, len(items), path.name)
        return batch.id

    async def _finish(self, sdk: openai.AsyncOpenAI, sub: dict) -> None:
        """Poll one batch until it ends, then collect its output and error files."""
        while True:
            batch = await sdk.batches.retrieve(sub["batch_id"])
            sub["status"] = batch.status
            if batch.status in TERMINAL:
                break
            counts = batch.request_counts
            log.info("synthesize: batch %s %s (%s/%s done)", batch.id, batch.status,
                     counts.completed if counts else "?", counts.total if counts else "?")
            self.stats["polls"] += 1
            await asyncio.sleep(self.cfg.batch_poll_seconds)
        seen: set[str] = set()
        for fid in (batch.output_file_id, batch.error_file_id):
            if fid:
                text = (await sdk.files.content(fid)).text
                for line in text.splitlines():
                    if line.strip():
                        seen.add(self._collect(json.loads(line), sub))
        batch_error = "; ".join(e.message or "" for e in (batch.errors.data or [])) if batch.errors else ""
        for key in sub["keys"]:
            if key not in seen:
                self.state["errors"][key] = f"batch_{batch.status}: item not in the batch output {batch_error}".strip()
                self.stats["missing_items"] += 1
        self.cache.flush()  # answers on disk before the state says "collected"
        sub["collected"] = True
        self._save()

    def _collect(self, item: dict, sub: dict) -> str:
        key = item.get("custom_id", "")
        resp = item.get("response") or {}
        status = resp.get("status_code")
        if status == 200:
            try:
                o = answer_outcome(check_completion(resp.get("body")), "batch")
            except (ValueError, KeyError, TypeError) as exc:
                self.state["errors"][key] = f"malformed: batch item body: {exc}"
                self.stats["item:malformed"] += 1
                return key
            self.cache.put(key, sub["models"].get(key, self.cfg.model), o)
            self.state["errors"].pop(key, None)
            self.stats[f"item:{o.status}"] += 1
            return key
        err = item.get("error") or ((resp.get("body") or {}).get("error") if isinstance(resp.get("body"), dict)
                                    else None) or {}
        kind = f"http_{status}" if status else (err.get("code") or "error")
        self.state["errors"][key] = scrub(f"{kind}: {err.get('message') or 'no message'}", self._key)
        self.stats[f"item_error:{status or kind}"] += 1
        if status is not None and 400 <= status < 500 and status not in (408, 409, 429):
            self.state["final"].append(key)  # a bad request stays bad: do not resubmit
        return key
