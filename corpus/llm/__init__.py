"""LLM backends for the teacher: an async OpenAI-compatible client with retries and rate limits
(:mod:`client`, :mod:`transport`, :mod:`retry`, :mod:`limits`), a content-addressed cache (:mod:`cache`),
the online/replay runner (:mod:`runner`), the Batch API (:mod:`batch`), prices (:mod:`pricing`) and
progress (:mod:`progress`). Configuration: :class:`corpus.llm.config.SynthesizeConfig`.
"""
