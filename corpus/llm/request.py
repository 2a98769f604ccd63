"""One chat request to the teacher, its content-addressed key, and its outcome.

A request's messages keep images as references (``{"type": "image", "sha256", "path"}``) until it is
sent, so thousands of pending requests never hold base64 bytes. The cache key is computed from
the model, the messages with each image replaced by its sha256 and pixel budget, and the generation
parameters: never a run id, a path or anything about parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus.store import stable_hash

KEY_VERSION = 1


def image_part(sha256: str, path: Path) -> dict:
    return {"type": "image", "sha256": sha256, "path": path}


@dataclass
class ChatRequest:
    """``messages``: OpenAI-style messages whose content is a string or a list of text/image parts."""

    model: str
    messages: list[dict]
    params: dict = field(default_factory=dict)
    image_max_pixels: int = 1024 * 1024
    reask: int = 0
    _key: str | None = field(default=None, repr=False)

    def key_document(self) -> dict:
        mp = self.image_max_pixels
        messages = [_map_images(m, lambda p: {"type": "image", "sha256": p["sha256"], "max_pixels": mp})
                    for m in self.messages]
        doc: dict[str, Any] = {"v": KEY_VERSION, "model": self.model, "messages": messages, "params": self.params}
        if self.reask:
            doc["reask"] = self.reask
        return doc

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = stable_hash(self.key_document())
        return self._key

    def again(self, n: int) -> ChatRequest:
        """The same request, re-asked for the n-th time (its own cache entry)."""
        return ChatRequest(self.model, self.messages, self.params, self.image_max_pixels, n)

    @property
    def image_count(self) -> int:
        return sum(1 for m in self.messages if isinstance(m["content"], list)
                   for p in m["content"] if p.get("type") == "image")

    def text_chars(self) -> int:
        n = 0
        for m in self.messages:
            c = m["content"]
            n += len(c) if isinstance(c, str) else sum(len(p.get("text", "")) for p in c)
        return n

    def body(self, data_url: Callable[[Path, int], str]) -> dict:
        """The JSON body sent to ``/chat/completions`` (images become data URLs here)."""
        def url(p: dict) -> dict:
            return {"type": "image_url", "image_url": {"url": data_url(Path(p["path"]), self.image_max_pixels)}}

        messages = [_map_images(m, url) for m in self.messages]
        return {"model": self.model, "messages": messages, **self.params}


def _map_images(m: dict, image: Callable[[dict], dict]) -> dict:
    """``{role, content}`` of a message with every image part replaced by ``image(part)``."""
    c = m["content"]
    if isinstance(c, str):
        return {"role": m["role"], "content": c}
    return {"role": m["role"], "content": [image(p) if p.get("type") == "image" else p for p in c]}


@dataclass
class Outcome:
    """What became of one request: an answer (any finish reason) or a recorded failure."""

    status: str
    output: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    response_id: str | None = None
    response_model: str | None = None
    source: str = "api"  # api | cache | replay | batch
    attempts: int = 0
    reasks: int = 0

    @property
    def answered(self) -> bool:
        return self.status not in ("failed", "no_cached_response")


def answer_outcome(data: dict, source: str, attempts: int = 0) -> Outcome:
    """The outcome of a chat completion body (as checked by ``transport.check_completion``)."""
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    content, finish = choice["message"].get("content"), choice.get("finish_reason")
    return Outcome(status=status_of(finish, content), output=content, finish_reason=finish,
                   prompt_tokens=int(usage.get("prompt_tokens") or 0),
                   completion_tokens=int(usage.get("completion_tokens") or 0),
                   response_id=data.get("id"), response_model=data.get("model"), source=source, attempts=attempts)


def status_of(finish_reason: str | None, content: str | None) -> str:
    """Map an answer to a teacher_status: ok | length | empty | content_filter."""
    if finish_reason == "content_filter":
        return "content_filter"
    if finish_reason == "length":
        return "length"
    if content is None or not content.strip():
        return "empty"
    return "ok"
