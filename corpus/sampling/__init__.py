"""Rejection-sampling backends behind one interface, and the rules that judge their answers.

- :mod:`corpus.sampling.base`: requests, sampling parameters, completions, the :class:`Backend` interface
  and :func:`make_backend`;
- :mod:`corpus.sampling.judge`: per-answer correctness and the hardness rules;
- backends: ``transformers`` (batched ``generate``), ``openai`` (any OpenAI-compatible server),
  ``vllm`` (in-process ``vllm.LLM``, imported lazily).
"""

from corpus.sampling.base import Backend, Completion, GenerationRequest, SamplingParams, make_backend
from corpus.sampling.judge import RULES, Judged, is_hard, judge_answer

__all__ = [
    "Backend",
    "Completion",
    "GenerationRequest",
    "SamplingParams",
    "make_backend",
    "RULES",
    "Judged",
    "is_hard",
    "judge_answer",
]
