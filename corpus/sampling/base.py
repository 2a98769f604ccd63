"""The backend interface: guard requests in, k completions per request out.

A :class:`GenerationRequest` is one candidate's guard input: the chat messages of
:func:`corpus.guard_format.guard_messages` (images as ``<image>`` tokens in the user text) and the paths of
its images, in order. Every backend turns the ``<image>`` tokens into its own image form at the same
positions (content blocks for the chat template, ``image_url`` parts for an OpenAI server, vision
placeholders plus ``multi_modal_data`` for vLLM), so all of them see the input the SFT model was trained on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Fanout = Literal["n", "requests"]
BACKENDS = ("transformers", "openai", "vllm")


@dataclass(frozen=True)
class GenerationRequest:
    key: str
    messages: list[dict]
    images: tuple[Path, ...] = ()
    image_sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """What every backend honours. ``fanout``: one request with ``n=k`` or k requests (seeds seed..seed+k-1)."""

    n: int = 4
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 1024
    seed: int = 0
    fanout: Fanout = "requests"

    def seeds(self) -> list[int]:
        return [self.seed + j for j in range(self.n)]


@dataclass(frozen=True)
class Completion:
    """One generated answer; ``error`` set (and ``text`` empty) when the backend could not produce it."""

    text: str
    tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None


@dataclass
class BatchResult:
    """Completions of a batch (one list of k per request, in request order) and what it cost."""

    completions: list[list[Completion]]
    generated_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def load_rgb(path: Path):
    """Open an image file as an RGB PIL image (raises ``OSError``/``FileNotFoundError`` naming the file)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


class Pending:
    """A batch handed to a backend: ``result()`` waits for (or, for a synchronous backend, computes) it."""

    def __init__(self, compute: Callable[[], BatchResult]):
        self._compute = compute

    def result(self) -> BatchResult:
        return self._compute()


class Backend(ABC):
    """Generate ``params.n`` completions for each request."""

    name: str = ""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> BatchResult: ...

    def submit(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> Pending:
        """Start a batch and return at once where the backend can overlap batches (a server backend keeps
        its requests in flight while the caller prepares the next unit); otherwise run it on ``result()``."""
        return Pending(lambda: self.generate(requests, params))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model / connections."""


def make_backend(name: str, model: str | Path, **options: Any) -> Backend:
    """Build a backend by name: ``transformers``, ``openai`` or ``vllm`` (imported only when chosen)."""
    if name == "transformers":
        from corpus.sampling.transformers_backend import TransformersBackend

        return TransformersBackend(model, **options)
    if name == "openai":
        from corpus.sampling.openai_backend import OpenAIBackend

        return OpenAIBackend(str(model), **options)
    if name == "vllm":
        from corpus.sampling.vllm_backend import VllmBackend

        return VllmBackend(model, **options)
    raise ValueError(f"unknown sampling backend {name!r}; known: {list(BACKENDS)}")
