"""Recipe section ``evaluate:``: which model answers which benchmarks, which prediction folders are scored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corpus.evaluation.protocols import Task
from corpus.stages.sample import OpenAISampleConfig, VllmSampleConfig

ProtocolName = Literal["strict", "guardreasoner"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchmarkSpec(_Strict):
    """One benchmark the model answers: an eval set of the recipe, or a source of its own."""

    name: str = Field(description="The scorer's benchmark name (AegisSafetyTest, XSTestReponseHarmful, HarmImageTest, "
                      "...): decides the tasks and the published figure it is compared with.")
    eval_set: str | None = Field(
        None, description="Name of an `ingest.decontaminate.eval_sets` entry to read (default: `name`), unless "
        "`source` is given.")
    source: dict[str, Any] | None = Field(
        None, description="A source spec of its own (adapter, path or hub, split, images_root, options), read by "
        "the same eval-set adapters as ingest.")
    heldout: str | None = Field(
        None, description="Read the rows the ingest stage held out under this name (e.g. harm_image_test, the "
        "paper's HarmImageTest split) from the run, instead of a source.")
    tasks: list[Task] | None = Field(None, description="Tasks scored (default: the scorer's map for known names).")
    limit: int | None = Field(None, gt=0, description="Answer only the first N rows (smoke tests).")

    @model_validator(mode="after")
    def _source_spec(self) -> BenchmarkSpec:
        if self.heldout is not None and (self.source is not None or self.eval_set is not None):
            raise ValueError("give `heldout` or a source (`source` / `eval_set`), not both")
        if self.source is not None:
            self.source_spec()  # validate the spec and its adapter options now
        return self

    def source_spec(self, eval_sets: list | None = None):
        """The :class:`corpus.recipe.SourceSpec` to read (own ``source``, else the named eval set)."""
        from corpus.recipe import SourceSpec
        from corpus.sources.base import adapter_class

        if self.source is not None:
            spec = SourceSpec.model_validate({"name": self.name, **self.source})
        else:
            wanted = self.eval_set or self.name
            spec = next((s for s in eval_sets or [] if s.name == wanted), None)
            if spec is None:
                known = [s.name for s in eval_sets or []]
                raise ValueError(f"evaluate benchmark {self.name!r}: no eval set named {wanted!r} in "
                                 f"ingest.decontaminate.eval_sets ({known}); give `source` instead")
        adapter_class(spec.adapter).Options.model_validate(spec.options)
        if self.limit is not None:
            spec = spec.model_copy(update={"limit": min(self.limit, spec.limit or self.limit)})
        return spec


class PredictionsSpec(_Strict):
    """A folder of released or earlier predictions (``<Benchmark>/generated_predictions.jsonl``) to score."""

    path: str = Field(description="The folder; `embedded:` points into the package's data.")
    name: str | None = Field(None, description="Report name (default: the folder's name).")
    protocol: ProtocolName = "strict"
    reference: str | None = Field(None, description="Published model to print beside it, e.g. `GuardReasoner 8B`.")


class EvaluateConfig(_Strict):
    """Recipe section ``evaluate:``."""

    enabled: bool = True
    model: str | None = Field(
        "auto", description="The guard that answers the benchmarks: `auto` = <run>/train-rl/model, else "
        "<run>/train-sft/model; `rl`, `sft`, `tiny`, a local folder, or (backend openai) the served name; "
        "null = generate nothing.")
    name: str | None = Field(None, description="Report name of the model (default: the model).")
    reference: str | None = Field(None, description="Published model to print beside ours (default: looked up "
                                  "by name, e.g. yueliu1999/GuardReasoner-8B).")
    protocol: ProtocolName = Field("strict", description="strict (guard_format's parser) or guardreasoner "
                                   "(the released scorer); the other is reported beside it.")
    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    max_new_tokens: int = Field(2048, ge=1, description="Greedy answers are cut here (the manifest counts cuts).")
    seed: int | None = Field(None, description="Request seed; None = the recipe's seed.")
    unit_rows: int = Field(64, ge=1, description="Rows per committed unit (the resume granularity).")
    batch_size: int = Field(8, ge=1, description="transformers: rows per generate call.")
    device: str = Field("auto", description="transformers: cpu, cuda, ... or auto.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    openai: OpenAISampleConfig = Field(default_factory=OpenAISampleConfig)
    vllm: VllmSampleConfig = Field(default_factory=VllmSampleConfig)
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list)
    predictions: list[PredictionsSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> EvaluateConfig:
        names = [b.name for b in self.benchmarks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate benchmark names {dup}")
        return self
