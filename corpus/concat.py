"""Safety-aware data concatenation (GuardReasoner-VL): pair hard samples, merge them, label them.

Pure functions over plain row dicts (the unified sample columns); the stage in
``corpus.stages.concat`` reads and writes the checkpoints.

Rules, as implemented here:

- **Pairs** are distinct unordered pairs of hard rows drawn uniformly at random without replacement
  from every pair the policy allows (``any``; ``same_modality``: both members of one modality;
  ``cross_modality``: members of different modalities). A row may be a member of several pairs; the
  member order inside a pair is a coin flip. The pool is sorted by id first, so the result does not
  depend on how the input was split into parts.
- **Labels** (:func:`combine_labels`): the request label is ``unharmful`` only if both requests are
  ``unharmful``, else ``harmful``. The response label likewise, where a member without a response
  (``None``) counts as neutral: None + None -> None, None + harmful -> harmful, None + unharmful ->
  unharmful (the joined response then is the one member's response, so the label must judge it).
- **label_origin** (:func:`combine_origin`): ``gold`` when gold labels alone decide the combined
  label (harmful: some harmful member's label is gold; unharmful: every judged member's label is
  gold), else ``teacher``; None where the combined label is None.
- **Text**: prompts and responses are joined with the separator; a None side is left out; both None
  gives None. **Images**: ``list`` keeps every member image in order; ``stitch`` (default) merges
  them into one image with :func:`corpus.images.stitch` when the pair has two or more images (a
  single image is kept as it is). **refusal_label**: kept when both members agree, else None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from corpus.guard_format import RESERVED_TOKENS
from corpus.store import stable_hash

HARMFUL, UNHARMFUL = "harmful", "unharmful"
Pairing = Literal["any", "same_modality", "cross_modality"]


class ConcatConfig(BaseModel):
    """Recipe section ``concat:``: how the RL set is built from the hard samples."""

    model_config = ConfigDict(extra="forbid")

    total: int = Field(12000, ge=1, description="Size of the RL set (capped by what the hard rows allow).")
    share: float = Field(0.2, ge=0.0, le=1.0, description="Share of concatenated rows in the RL set.")
    pairing: Pairing = Field("any", description="Which hard rows may be paired: any, same_modality, cross_modality.")
    separator: str = Field("\n\n", description="Joins the two prompts (and the two responses).")
    image_mode: Literal["stitch", "list"] = Field(
        "stitch", description="stitch: one merged image per concatenated row; list: all member images in order."
    )
    stitch_max_pixels: int = Field(1280 * 28 * 28, ge=64, description="Pixel budget of a stitched image.")
    seed: int | None = Field(None, description="Seed of pairing and selection; default: the recipe's seed.")
    part_rows: int = Field(5000, ge=1, description="Rows per output Parquet part.")

    @field_validator("separator")
    @classmethod
    def _no_reserved_tokens(cls, v: str) -> str:
        bad = [t for t in RESERVED_TOKENS if t in v]
        if bad:
            raise ValueError(f"separator holds reserved guard tokens {bad}")
        return v


# ---------------------------------------------------------------- labels


def combine_request(a: str, b: str) -> str:
    """Request label of a concatenation: unharmful only if both are unharmful."""
    for x in (a, b):
        if x not in (HARMFUL, UNHARMFUL):
            raise ValueError(f"request label must be harmful or unharmful, got {x!r}")
    return UNHARMFUL if a == UNHARMFUL and b == UNHARMFUL else HARMFUL


def combine_response(a: str | None, b: str | None) -> str | None:
    """Response label of a concatenation: None only if both are None; a None side is neutral."""
    for x in (a, b):
        if x not in (HARMFUL, UNHARMFUL, None):
            raise ValueError(f"response label must be harmful, unharmful or None, got {x!r}")
    judged = [x for x in (a, b) if x is not None]
    if not judged:
        return None
    return UNHARMFUL if all(x == UNHARMFUL for x in judged) else HARMFUL


def combine_labels(a: tuple[str, str | None], b: tuple[str, str | None]) -> tuple[str, str | None]:
    """``(request, response)`` of the concatenation of two labelled rows."""
    return combine_request(a[0], b[0]), combine_response(a[1], b[1])


def combine_origin(labels: Sequence[str | None], origins: Sequence[str | None], combined: str | None) -> str | None:
    """Origin of a combined label: gold when gold member labels alone decide it, else teacher."""
    if combined is None:
        return None
    judged = [(lab, org) for lab, org in zip(labels, origins, strict=True) if lab is not None]
    if combined == HARMFUL:
        deciders = [org for lab, org in judged if lab == HARMFUL]
        return "gold" if "gold" in deciders else "teacher"
    return "gold" if all(org == "gold" for _, org in judged) else "teacher"


# ---------------------------------------------------------------- text


def join_text(a: str | None, b: str | None, separator: str) -> str | None:
    """Join two optional texts; a None side is left out, both None gives None."""
    parts = [x for x in (a, b) if x is not None]
    return separator.join(parts) if parts else None


def _union(a: Sequence[str], b: Sequence[str]) -> list[str]:
    out: list[str] = []
    for x in [*a, *b]:
        if x not in out:
            out.append(x)
    return out


def modality_of(prompt: str | None, n_images: int) -> str:
    if n_images == 0:
        return "text"
    return "image" if prompt is None or not prompt.strip() else "text_image"


def concat_id(a_id: str, b_id: str, separator: str, image_mode: str) -> str:
    return stable_hash({"concat": [a_id, b_id], "separator": separator, "image_mode": image_mode})[:16]


def merge_rows(a: dict[str, Any], b: dict[str, Any], separator: str, images: list[dict]) -> dict[str, Any]:
    """The concatenated row of ``a`` then ``b`` (unified sample columns), with ``images`` already merged."""
    req, resp = combine_labels((a["request_label"], a["response_label"]), (b["request_label"], b["response_label"]))
    oa, ob = a["label_origin"] or {}, b["label_origin"] or {}
    prompt = join_text(a["prompt"], b["prompt"], separator)
    image_mode = "list" if len(images) == len(a["images"]) + len(b["images"]) else "stitch"
    refusal = a.get("refusal_label") if a.get("refusal_label") == b.get("refusal_label") else None
    meta = {
        "concat": {
            "members": [a["id"], b["id"]],
            "member_sources": [a["source"], b["source"]],
            "member_modalities": [a["modality"], b["modality"]],
            "member_images": [len(a["images"]), len(b["images"])],
            "image_mode": image_mode,
        }
    }
    return {
        "id": concat_id(a["id"], b["id"], separator, image_mode),
        "source": a["source"] if a["source"] == b["source"] else f"{a['source']}+{b['source']}",
        "source_split": a["source_split"] if a["source_split"] == b["source_split"] else
        f"{a['source_split']}+{b['source_split']}",
        "source_id": f"{a['id']}+{b['id']}",
        "modality": modality_of(prompt, len(images)),
        "prompt": prompt,
        "response": join_text(a["response"], b["response"], separator),
        "images": images,
        "request_label": req,
        "response_label": resp,
        "refusal_label": refusal,
        "label_origin": {
            "request": combine_origin(
                [a["request_label"], b["request_label"]], [oa.get("request"), ob.get("request")], req
            ),
            "response": combine_origin(
                [a["response_label"], b["response_label"]], [oa.get("response"), ob.get("response")], resp
            ),
        },
        "categories": _union(a["categories"], b["categories"]),
        "raw_categories": _union(a["raw_categories"], b["raw_categories"]),
        "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False),
        "kind": "concat",
        "members": [a["id"], b["id"]],
    }


def unlabelled_reason(row: dict[str, Any]) -> str | None:
    """Why a hard row cannot be concatenated (a label it needs is missing), else None."""
    if row["request_label"] not in (HARMFUL, UNHARMFUL):
        return "unlabelled:request"
    if row["response"] is not None and row["response_label"] not in (HARMFUL, UNHARMFUL):
        return "unlabelled:response"
    if row["response"] is None and row["response_label"] is not None:
        return "label_without_response"
    return None


# ---------------------------------------------------------------- pairing


def _groups(modalities: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, m in enumerate(modalities):
        out.setdefault(m, []).append(i)
    return dict(sorted(out.items()))


def _tri(n: int) -> int:
    return n * (n - 1) // 2


def _decode_tri(k: int, n: int) -> tuple[int, int]:
    """The k-th pair (i < j) of n items in row-major order."""
    # rows i hold n-1-i pairs; find the row by the closed form, then fix rounding
    i = int(n - 2 - math.floor(math.sqrt(-8 * k + 4 * n * (n - 1) - 7) / 2.0 - 0.5))
    while i > 0 and k < i * (2 * n - i - 1) // 2:
        i -= 1
    while k >= (i + 1) * (2 * n - i - 2) // 2:
        i += 1
    j = k - i * (2 * n - i - 1) // 2 + i + 1
    return i, j


def _blocks(modalities: Sequence[str], policy: Pairing) -> list[tuple[str, list[int], list[int], int]]:
    """The allowed pairs as blocks: ("tri", members, [], count) or ("rect", left, right, count)."""
    if policy == "any":
        idx = list(range(len(modalities)))
        return [("tri", idx, [], _tri(len(idx)))]
    groups = _groups(modalities)
    if policy == "same_modality":
        return [("tri", g, [], _tri(len(g))) for g in groups.values()]
    if policy == "cross_modality":
        keys = list(groups)
        return [
            ("rect", groups[x], groups[y], len(groups[x]) * len(groups[y]))
            for n, x in enumerate(keys)
            for y in keys[n + 1:]
        ]
    raise ValueError(f"unknown pairing policy {policy!r}")


def count_pairs(modalities: Sequence[str], policy: Pairing) -> int:
    """How many distinct unordered pairs the policy allows."""
    return sum(b[3] for b in _blocks(modalities, policy))


def choose_pairs(modalities: Sequence[str], policy: Pairing, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n`` distinct pairs (indexes into ``modalities``), uniform over the allowed pairs, member order random."""
    blocks = _blocks(modalities, policy)
    total = sum(b[3] for b in blocks)
    if n > total:
        raise ValueError(f"{n} pairs requested but the {policy} policy allows only {total}")
    if n == 0:
        return []
    picks = rng.choice(total, size=n, replace=False)
    flips = rng.integers(0, 2, size=n)
    starts = np.cumsum([0] + [b[3] for b in blocks])
    out = []
    for k, flip in zip(picks.tolist(), flips.tolist(), strict=True):
        bi = int(np.searchsorted(starts, k, side="right")) - 1
        kind, left, right, _ = blocks[bi]
        local = k - int(starts[bi])
        if kind == "tri":
            i, j = _decode_tri(local, len(left))
            a, b = left[i], left[j]
        else:
            a, b = left[local // len(right)], right[local % len(right)]
        out.append((b, a) if flip else (a, b))
    return out


# ---------------------------------------------------------------- sizes


def plan_sizes(n_hard: int, n_pairs: int, total: int, share: float) -> tuple[int, int]:
    """``(hard rows, concatenated rows)`` of the RL set: ``(T - round(share*T), round(share*T))``.

    T is the largest size <= ``total`` whose hard part fits in ``n_hard`` and whose concatenated part
    fits in ``n_pairs`` (rounding half up), so the share is always the configured one (up to
    rounding) and the size is capped by what exists.
    """
    def fits(t: int) -> bool:
        c = round_half_up(share * t)
        return t - c <= n_hard and c <= n_pairs

    lo, hi = 0, total
    while lo < hi:  # both parts are non-decreasing in t
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    c = round_half_up(share * lo)
    return lo - c, c


def round_half_up(x: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return int(math.floor(x + 0.5))
