"""Expected corpus composition of a recipe, from the known sizes of the seed datasets (before any work).

``expected_counts(recipe)`` multiplies each source's known record count (shared/sources.md, the sizes after
the adapter's own mapping, e.g. ToxicChat's human-annotated rows) by its ``fraction`` (a seeded Bernoulli
sample, so the figure is an expectation), then per modality subtracts the eval sets whose membership is
known to lie inside the pool (HarmImageTest: the authors' 20% of the pooled images, matched by image hash)
and the ``heldout`` share. Exact dedup and text near-duplicate decontamination remove further rows whose
number is not known in advance; they are not estimated. ``corpus check --counts`` prints the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corpus.recipe import Recipe, SourceSpec

#: GuardReasoner-VLTrain as published (arXiv 2505.11049, Table 6)
PAPER_TABLE6 = {"text": 63_799, "image": 13_267, "text_image": 46_030}

#: VLGuard images per path prefix (train.json, test.json); shared/sources.md §4
VLGUARD_PREFIXES = {
    "train.json": {"hatefulMemes": 500, "harm-p": 100, "bad_ads": 200, "HOD": 300, "privacyAlert": 900},
    "test.json": {"hatefulMemes": 200, "harm-p": 100, "bad_ads": 102, "HOD": 200, "privacyAlert": 398},
}


@dataclass(frozen=True)
class Known:
    """A seed split of known size: matched on adapter, and hub config / split or the local file name."""

    adapter: str
    modality: str
    size: int
    split: str | None = None
    config: str | None = None
    file: str | None = None


#: record counts from shared/sources.md (§3-§5: the sizes the adapters yield)
KNOWN: tuple[Known, ...] = (
    Known("wildguardmix", "text", 86_759, config="wildguardtrain"),
    Known("aegis1", "text", 10_798, split="train"),
    Known("beavertails", "text", 27_186, split="30k_train"),
    Known("beavertails", "text", 300_567, split="330k_train"),
    Known("toxicchat", "text", 2_801, split="train"),  # human-annotated rows of toxicchat0124 train
    Known("unsafebench", "image", 8_109, split="train"),
    Known("unsafebench", "image", 2_037, split="test"),
    Known("hod", "image", 10_631),
    Known("spavl", "text_image", 93_258, split="train"),
)
#: eval sets that lie inside a modality's pool, by name: (modality, size)
EVAL_INSIDE_POOL = {"HarmImageTest": ("image", 3_295)}


def known_size(spec: SourceSpec) -> tuple[str, int] | None:
    """``(modality, records)`` of a source spec, or None when its size is not known here."""
    if spec.adapter == "vlguard":
        file = PurePosixPath(spec.path or "").name
        per_prefix = VLGUARD_PREFIXES.get(file)
        if per_prefix is None:
            return None
        prefixes = spec.options.get("prefixes") or list(per_prefix)
        if any(p not in per_prefix for p in prefixes):
            return None
        return "image", sum(per_prefix[p] for p in prefixes)
    for k in KNOWN:
        if k.adapter != spec.adapter:
            continue
        if k.config is not None and spec.config != k.config:
            continue
        if k.split is not None and spec.split != k.split:
            continue
        return k.modality, k.size
    return None


def expected_counts(recipe: Recipe) -> dict[str, Any]:
    """Expected rows per source and per modality (pool, minus eval sets inside the pool, minus heldout)."""
    ing = recipe.ingest
    sources = []
    pool: dict[str, float] = {}
    unknown = []
    for spec in ing.sources:
        if not spec.enabled:
            continue
        got = known_size(spec)
        if got is None:
            unknown.append(spec.name)
            sources.append({"name": spec.name, "adapter": spec.adapter, "modality": None, "size": None,
                            "fraction": spec.fraction, "expected": None})
            continue
        modality, size = got
        n = min(size, spec.limit) if spec.limit else size
        expected = n * spec.fraction
        pool[modality] = pool.get(modality, 0.0) + expected
        sources.append({"name": spec.name, "adapter": spec.adapter, "modality": modality, "size": n,
                        "fraction": spec.fraction, "expected": expected})
    evals = {e.name: EVAL_INSIDE_POOL[e.name] for e in ing.decontaminate.eval_sets
             if ing.decontaminate.enabled and e.name in EVAL_INSIDE_POOL}
    ho = ing.heldout
    modalities = []
    for modality in ("text", "image", "text_image"):
        if modality not in pool:
            continue
        removed = sum(size for m, size in evals.values() if m == modality)
        after = max(pool[modality] - removed, 0.0)
        held = after * ho.fraction if ho is not None and modality in ho.modalities else 0.0
        train = after - held
        modalities.append({"modality": modality, "pool": pool[modality], "eval_removed": removed,
                           "heldout": held, "train": train, "paper": PAPER_TABLE6.get(modality)})
    total = sum(m["train"] for m in modalities)
    return {"sources": sources, "modalities": modalities, "train_total": total,
            "paper_total": sum(PAPER_TABLE6.values()), "eval_sets_inside_pool": sorted(evals),
            "unknown_sizes": unknown}


def render_counts(report: dict[str, Any]) -> str:
    """The composition as a plain-text table."""
    lines = [f"{'source':24s} {'adapter':14s} {'modality':10s} {'records':>9s} {'fraction':>9s} {'expected':>10s}"]
    for s in report["sources"]:
        if s["size"] is None:
            lines.append(f"{s['name']:24s} {s['adapter']:14s} {'?':10s} {'?':>9s} {s['fraction']:>9.6g} {'?':>10s}")
        else:
            lines.append(f"{s['name']:24s} {s['adapter']:14s} {s['modality']:10s} {s['size']:>9,d} "
                         f"{s['fraction']:>9.6g} {s['expected']:>10,.1f}")
    lines.append("")
    lines.append(f"{'modality':12s} {'pool':>10s} {'- eval':>8s} {'- heldout':>10s} {'= train':>10s} {'paper':>8s}")
    for m in report["modalities"]:
        paper = f"{m['paper']:>8,d}" if m["paper"] is not None else f"{'':>8s}"
        lines.append(f"{m['modality']:12s} {m['pool']:>10,.1f} {m['eval_removed']:>8,d} {m['heldout']:>10,.1f} "
                     f"{m['train']:>10,.1f} {paper}")
    lines.append(f"{'total':12s} {'':>10s} {'':>8s} {'':>10s} {report['train_total']:>10,.1f} "
                 f"{report['paper_total']:>8,d}")
    if report["eval_sets_inside_pool"]:
        lines.append(f"eval sets removed from the pool by image hash: {', '.join(report['eval_sets_inside_pool'])}")
    if report["unknown_sizes"]:
        lines.append(f"sizes not known (left out of the totals): {', '.join(report['unknown_sizes'])}")
    lines.append("expected values (seeded fractions); dedup and text decontamination removals are not estimated")
    return "\n".join(lines)
