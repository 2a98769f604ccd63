"""Recipes: YAML files in ``pipelines/`` loaded into typed, validated configuration.

Unknown keys and bad values fail before any work, with a message naming the file and the key path
(``ingest.sources[2].fraction``). Local paths in a recipe are relative to the recipe file; the
prefix ``embedded:`` points into the package's embedded sample data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corpus.concat import ConcatConfig
from corpus.errors import RecipeError
from corpus.evaluation.config import EvaluateConfig
from corpus.llm.config import SynthesizeConfig
from corpus.resources import resource, samples_dir
from corpus.stages.export import ExportConfig
from corpus.stages.filter import FilterConfig
from corpus.stages.rl_export import RlExportConfig
from corpus.stages.sample import SampleConfig
from corpus.training.config import TrainRLConfig, TrainSFTConfig

EMBEDDED = "embedded:"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(Strict):
    """Where a seed dataset (or an eval set) lives and how to read it."""

    name: str = Field(description="Unique name; becomes the `source` column (or the leak:<name> benchmark name).")
    adapter: str = Field(description="Adapter that knows the dataset's columns and label mapping.")
    hub: str | None = Field(None, description="Hugging Face hub id, loaded with datasets.load_dataset.")
    config: str | None = Field(None, description="Hub config name.")
    split: str = Field("train", description="Split to read.")
    path: str | None = Field(
        None, description="Local file or folder (parquet, json, jsonl[.gz], csv, image folder, zip)."
    )
    format: Literal["auto", "parquet", "json", "jsonl", "csv", "imagefolder", "zip"] = "auto"
    member: str | None = Field(None, description="File inside a zip archive given as `path`.")
    images_root: str | None = Field(None, description="Folder or zip where relative image paths in records resolve.")
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="Share of the source kept (seeded, by sample id).")
    limit: int | None = Field(None, gt=0, description="Read at most this many records.")
    min_rows: int | None = Field(
        None, ge=1, description="Fail the ingest when the source yields fewer records (0 records always warns)."
    )
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict, description="Adapter options (validated by the adapter).")

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if bool(self.hub) == bool(self.path):
            raise ValueError("give exactly one of `hub` or `path`")
        return self


class HeldoutConfig(Strict):
    """Rows of some modalities split off (by image hash, seeded) and written as an eval set."""

    name: str = "harm_image_test"
    modalities: list[Literal["text", "image", "text_image"]] = Field(default_factory=lambda: ["image"])
    fraction: float = Field(0.2, ge=0.0, lt=1.0)


class DecontamConfig(Strict):
    enabled: bool = True
    ngram: int = Field(13, ge=3, description="Word n-gram size for overlap matching.")
    phash_max_distance: int = Field(4, ge=0, le=32, description="Max Hamming distance of 64-bit perceptual hashes.")
    eval_sets: list[SourceSpec] = Field(default_factory=list)


class LabelConflictConfig(Strict):
    """Copies of one sample (same normalised text and images) whose gold labels disagree."""

    keep: Literal["none", "priority"] = Field(
        "none", description="none: every copy is dropped (label_conflict); priority: the copy of the source "
        "listed first in `priority` is kept (copies of equally ranked sources are all dropped)."
    )
    priority: list[str] = Field(default_factory=list, description="Source names, most trusted first.")

    @model_validator(mode="after")
    def _priority_given(self) -> LabelConflictConfig:
        if self.keep == "priority" and not self.priority:
            raise ValueError("keep: priority needs `priority`, the source names most trusted first")
        return self


class NearDuplicateConfig(Strict):
    """Images within a perceptual-hash distance of each other: one cluster, on one side of the held-out split."""

    enabled: bool = True
    phash_max_distance: int = Field(4, ge=0, le=32, description="Max Hamming distance of 64-bit perceptual hashes.")


class IngestConfig(Strict):
    part_rows: int = Field(5000, ge=1, description="Rows per Parquet part (bounds memory).")
    max_text_chars: int = Field(200_000, ge=1, description="Longer prompts/responses are dropped (text_too_long).")
    max_image_pixels: int = Field(89_478_485, ge=1, description="Larger images are dropped (image:too_large).")
    max_image_bytes: int = Field(50_000_000, ge=1)
    dedup: bool = True
    label_conflict: LabelConflictConfig = Field(default_factory=LabelConflictConfig)
    near_duplicate: NearDuplicateConfig = Field(default_factory=NearDuplicateConfig)
    workers: int = Field(0, ge=0, description="Processes that decode images (0: one per core, up to 8; 1: none).")
    taxonomy: str | None = Field(None, description="Taxonomy YAML; default: the shipped corpus/taxonomy.yaml.")
    sources: list[SourceSpec] = Field(default_factory=list)
    heldout: HeldoutConfig | None = Field(default_factory=HeldoutConfig)
    decontaminate: DecontamConfig = Field(default_factory=DecontamConfig)
    label_overrides: str | None = Field(
        None, exclude=True, description="Reviewed labels (the file `corpus audit-labels` writes, corrected): "
        "applied by the filter, recorded as label_origin reviewed. Not part of the ingest hash: ingest rows "
        "keep the seed's labels.")

    @model_validator(mode="after")
    def _unique_names(self) -> IngestConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate source names {dup}")
        unknown = sorted(set(self.label_conflict.priority) - set(names))
        if unknown:
            raise ValueError(f"label_conflict.priority names unknown sources {unknown}; sources: {names}")
        return self


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    # stage sections: each later stage adds its own typed section below this line
    synthesize: SynthesizeConfig = Field(default_factory=SynthesizeConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    concat: ConcatConfig = Field(default_factory=ConcatConfig)
    rl_export: RlExportConfig = Field(default_factory=RlExportConfig)
    train_sft: TrainSFTConfig = Field(default_factory=TrainSFTConfig)
    train_rl: TrainRLConfig = Field(default_factory=TrainRLConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    #: the folder of the recipe file (local paths resolve against it); not part of the YAML
    base_dir: Path | None = Field(None, exclude=True)

    def resolve(self, path: str | None) -> Path | None:
        """Resolve a recipe path: ``embedded:`` prefix, absolute, or relative to the recipe file."""
        if path is None:
            return None
        if path.startswith(EMBEDDED):
            return samples_dir() / path[len(EMBEDDED):]
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir or Path.cwd()) / p


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_errors(errors: list[dict], file: str, prefix: str = "") -> str:
    lines = []
    for e in errors:
        key = prefix + _loc(tuple(p for p in e["loc"] if p not in ("function-after",)))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{file}: {key or '<top>'}: {msg}")
    return "\n".join(lines)


def parse_recipe(data: Any, file: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Validate a recipe mapping, including every source's adapter options."""
    from corpus.sources.base import adapter_class

    if not isinstance(data, dict):
        raise RecipeError(f"{file}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise RecipeError(_format_errors(exc.errors(), file)) from None
    groups = [("ingest.sources", recipe.ingest.sources), ("ingest.decontaminate.eval_sets",
                                                         recipe.ingest.decontaminate.eval_sets)]
    for where, specs in groups:
        for i, spec in enumerate(specs):
            try:
                cls = adapter_class(spec.adapter)
            except KeyError as exc:
                raise RecipeError(f"{file}: {where}[{i}].adapter: {exc.args[0]}") from None
            try:
                cls.Options.model_validate(spec.options)
            except ValidationError as exc:
                raise RecipeError(_format_errors(exc.errors(), file, f"{where}[{i}].options.")) from None
    return recipe


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load a recipe file; ``None`` loads the embedded default recipe."""
    try:
        p = Path(path) if path is not None else resource("pipelines", "default.yaml")
    except FileNotFoundError as exc:
        raise RecipeError(str(exc)) from None
    if not p.exists():
        raise RecipeError(f"recipe file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{p}: not valid YAML: {exc}") from None
    return parse_recipe(data, str(p), p.resolve().parent)
