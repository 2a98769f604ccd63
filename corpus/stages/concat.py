"""Stage ``concat``: the RL set = hard samples + safety-aware concatenations of hard-sample pairs.

Reads the sample stage (every candidate, ``hard`` marks the hard ones), keeps the sample columns,
and writes rows of ``schemas/rl.json`` (``kind`` hard|concat, ``members``). Pairing, merging and
the label rule live in :mod:`corpus.concat`. Everything random comes from one generator seeded by
the recipe (or ``concat.seed``) and the pool is sorted by id, so the same seed and input give the
same files byte for byte. Hard rows that cannot be used (a needed label missing, an image file
missing) and hard rows left out by the size cap go to ``dropped/`` with their reason.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.concat import (
    ConcatConfig,
    choose_pairs,
    count_pairs,
    merge_rows,
    plan_sizes,
    round_half_up,
    unlabelled_reason,
)
from corpus.engine.units import UnitResult, UnitTask, run_units
from corpus.schema import load_schema
from corpus.store import StageDir, StageWriter, stable_hash

if TYPE_CHECKING:
    from corpus.recipe import Recipe

HELP = (
    "Build the RL set: the hard samples of the sample stage plus safety-aware concatenations of "
    "random hard-sample pairs (texts joined, images stitched or listed, harmful if either member is "
    "harmful), with the concatenated share and total size from the recipe's `concat:` section."
)
STAGE = "concat"
UPSTREAM = "sample"


def rl_schema():
    return load_schema("sample").extend(load_schema("rl"))


def effective_config(recipe: Recipe) -> dict[str, Any]:
    cfg = recipe.concat
    return {**cfg.model_dump(), "seed": recipe.seed if cfg.seed is None else cfg.seed}


def make_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(stable_hash(["concat", seed])[:16], 16))


def _dropped_table(rows: list[dict], sample_arrow: pa.Schema) -> pa.Table:
    fields = list(sample_arrow) + [pa.field("drop_reason", pa.string()), pa.field("detail", pa.string()),
                                   pa.field("record", pa.string())]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _stitched(members: list[dict], run_dir: Path, max_pixels: int) -> list[dict]:
    """One stitched image of every member image, stored under ``run_dir/images/``."""
    from PIL import Image

    from corpus.images import normalise_image, stitch, store_image

    opened = []
    for img in members:
        path = run_dir / img["path"]
        try:
            with Image.open(path) as im:
                im.load()
                opened.append(im.copy())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"concat: cannot read image {path}: {exc}") from None
    merged = stitch(opened, max_pixels)
    buf = io.BytesIO()
    merged.save(buf, "PNG")
    data = buf.getvalue()
    norm = normalise_image(data, max_pixels=max_pixels, max_bytes=max(len(data), 1))
    return [store_image(norm, run_dir)]


def build_concat_row(a: dict, b: dict, cfg: ConcatConfig, run_dir: Path) -> dict:
    images = list(a["images"]) + list(b["images"])
    if cfg.image_mode == "stitch" and len(images) >= 2:
        images = _stitched(images, run_dir, cfg.stitch_max_pixels)
    return merge_rows(a, b, cfg.separator, images)


def plan(pool: list[dict], cfg: ConcatConfig, seed: int) -> tuple[list[tuple], list[int], dict[str, Any]]:
    """Decide the RL set: an ordered list of ("hard", i) / ("concat", i, j) entries, the left-out hard rows, sizes."""
    rng = make_rng(seed)
    modalities = [r["modality"] for r in pool]
    n_pairs = count_pairs(modalities, cfg.pairing)
    n_hard, n_concat = plan_sizes(len(pool), n_pairs, cfg.total, cfg.share)
    chosen = sorted(rng.choice(len(pool), size=n_hard, replace=False).tolist()) if n_hard else []
    pairs = choose_pairs(modalities, cfg.pairing, n_concat, rng)
    entries: list[tuple] = [("hard", i) for i in chosen] + [("concat", i, j) for i, j in pairs]
    order = rng.permutation(len(entries)).tolist() if entries else []
    entries = [entries[k] for k in order]
    left_out = sorted(set(range(len(pool))) - set(chosen))
    limits = ["total"] if n_hard + n_concat >= cfg.total else []
    if not limits:  # what stops the set from growing by one row
        c = round_half_up(cfg.share * (n_hard + n_concat + 1))
        limits = [name for name, hit in (("hard_rows", n_hard + n_concat + 1 - c > len(pool)),
                                         ("pairs", c > n_pairs)) if hit]
    sizes = {
        "pool": len(pool),
        "pairs_allowed": n_pairs,
        "hard": n_hard,
        "concat": n_concat,
        "total": n_hard + n_concat,
        "requested_total": cfg.total,
        "requested_share": cfg.share,
        "limited_by": limits,
    }
    return entries, left_out, sizes


#: what the driver holds per hard row: enough to check it, plan the pairs and find it again
INDEX_COLUMNS = ["id", "modality", "request_label", "response_label", "response", "images", "hard"]


def read_pool_index(run_dir: Path) -> tuple[list[dict], int]:
    """The hard rows of the sample stage as small dicts (id, modality, labels, has_response, image paths),
    sorted by id, and the number of candidates. Parts are read one at a time; prompts, responses and
    every other column stay on disk, so memory grows with the number of hard rows, not their size."""
    hard: list[dict] = []
    rows_in = 0
    for part in StageDir(run_dir, UPSTREAM).parts():
        t = pq.read_table(part, columns=INDEX_COLUMNS)
        rows_in += t.num_rows
        t = t.filter(pc.fill_null(t.column("hard"), False))
        has_response = pc.is_valid(t.column("response")).to_pylist()
        images = t.column("images").to_pylist()
        for k, (rid, mod, req, resp) in enumerate(zip(*(t.column(c).to_pylist() for c in (
                "id", "modality", "request_label", "response_label")))):
            hard.append({"id": rid, "modality": mod, "request_label": req, "response_label": resp,
                         "has_response": has_response[k], "images": [img["path"] for img in images[k]]})
    ids = Counter(r["id"] for r in hard)
    dup = sorted(i for i, n in ids.items() if n > 1)
    if dup:
        raise ValueError(f"concat: the sample stage has duplicate ids among hard rows: {dup[:5]}")
    hard.sort(key=lambda r: r["id"])
    return hard, rows_in


def _usable(r: dict, run_dir: Path) -> tuple[str | None, str | None]:
    """(drop reason, detail) of a hard row that cannot go into the RL set, else (None, None)."""
    reason = unlabelled_reason({"request_label": r["request_label"], "response_label": r["response_label"],
                                "response": "" if r["has_response"] else None})
    if reason:
        return reason, f"request={r['request_label']!r} response_label={r['response_label']!r}"
    missing = [p for p in r["images"] if not (run_dir / p).is_file()]
    if missing:
        return "image:missing", f"not found under {run_dir}: {missing}"
    return None, None


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    cfg = recipe.concat
    config = effective_config(recipe)
    up = StageDir(run_dir, UPSTREAM)
    if not up.complete:
        raise FileNotFoundError(f"concat needs the finished `{UPSTREAM}` stage in {run_dir}; run `corpus sample` first")
    schema = rl_schema()
    writer = StageWriter(run_dir, STAGE, schema, config=config, input_fingerprint=up.fingerprint(), force=force)
    if writer.skipped:
        return writer.manifest()

    hard, rows_in = read_pool_index(run_dir)
    pool, dropped = [], []
    for r in hard:
        reason, detail = _usable(r, run_dir)
        if reason:
            dropped.append((r["id"], reason, detail))
        else:
            pool.append(r)
    entries, left_out, sizes = plan(pool, cfg, config["seed"])
    dropped += [(pool[i]["id"], "sampled_out", "beyond the RL set size") for i in left_out]
    dropped.sort()

    # units: the planned rows in order, part_rows at a time; the dropped rows by id, part_rows per unit
    plan_units = [[(e[0], *(pool[i]["id"] for i in e[1:])) for e in entries[k:k + cfg.part_rows]]
                  for k in range(0, len(entries), cfg.part_rows)]
    drop_units = [dropped[k:k + cfg.part_rows] for k in range(0, len(dropped), cfg.part_rows)]
    n_units = max(len(plan_units), len(drop_units), 1)
    counters0 = {"rows_in": rows_in, "hard_in": len(hard), "not_hard": rows_in - len(hard), "pool": len(pool),
                 "hard_out": sizes["hard"], "concat_out": sizes["concat"]}
    parts = tuple(str(p) for p in up.parts())
    done = writer.done_units()
    tasks = []
    for unit in range(n_units):
        if unit in done:
            continue
        chunk = plan_units[unit] if unit < len(plan_units) else []
        drops = drop_units[unit] if unit < len(drop_units) else []
        need = sorted({i for e in chunk for i in e[1:]} | {d[0] for d in drops})
        tasks.append(UnitTask(unit, parts, tuple(load_schema("sample").names), rows=len(chunk) + len(drops),
                              ids=tuple(need), payload={"entries": chunk, "dropped": drops,
                                                        "counters": counters0 if unit == 0 else {}}))
    run_units(writer, partial(transform, cfg=cfg, run_dir=run_dir), tasks, work="cpu", desc=STAGE,
              total_rows=len(entries) + len(dropped))
    return writer.finish(extra={"sizes": sizes})


def transform(table: pa.Table, task: UnitTask, cfg: ConcatConfig, run_dir: Path) -> UnitResult:
    """One unit of the RL set: its planned hard and concatenated rows, and its share of the dropped rows."""
    by_id = {r["id"]: r for r in table.to_pylist()}
    out = []
    for e in task.payload["entries"]:
        if e[0] == "hard":
            out.append({**by_id[e[1]], "kind": "hard", "members": [e[1]]})
        else:
            out.append(build_concat_row(by_id[e[1]], by_id[e[2]], cfg, run_dir))
    drops = [{**by_id[rid], "drop_reason": reason, "detail": detail, "record": None}
             for rid, reason, detail in task.payload["dropped"]]
    kept = pa.Table.from_pylist(out, schema=rl_schema().arrow)
    dropped = _dropped_table(drops, load_schema("sample").arrow) if drops else None
    return UnitResult(kept, dropped, counters=dict(task.payload["counters"]))


# ---------------------------------------------------------------- stats


def _labels(df: pl.DataFrame) -> dict[str, dict[str, int]]:
    out = {}
    for kind in ("request", "response"):
        counts = df.group_by(pl.col(f"{kind}_label").cast(pl.String).fill_null("None")).len()
        out[kind] = {str(k): int(n) for k, n in sorted(counts.iter_rows())}
    return out


def stats(run_dir: Path | str) -> dict:
    """RL set composition: hard vs concatenated, modality pairs, label balance before and after concatenation."""
    run_dir = Path(run_dir)
    out = StageDir(run_dir, STAGE)
    parts = [str(p) for p in out.parts()]
    if not parts:
        return {}
    df = (pl.scan_parquet(parts)
          .select("kind", "modality", "request_label", "response_label",
                  pl.col("images").list.len().alias("n_images"),
                  pl.col("meta").str.json_path_match("$.concat.member_modalities").alias("pair"))
          .collect())
    n = df.height
    concat = df.filter(pl.col("kind") == "concat")
    pairs = Counter("+".join(sorted(json.loads(p))) for p in concat["pair"].to_list() if p)
    hard_pool, _ = read_pool_index(run_dir) if StageDir(run_dir, UPSTREAM).parts() else ([], 0)
    pool_df = pl.DataFrame({"request_label": [r["request_label"] for r in hard_pool],
                            "response_label": [r["response_label"] for r in hard_pool]},
                           schema={"request_label": pl.String, "response_label": pl.String})
    kinds = dict(sorted(df.group_by("kind").len().iter_rows()))
    manifest = out.manifest() or {}
    return {
        "rows": n,
        "kinds": {k: int(v) for k, v in kinds.items()},
        "concat_share": round(kinds.get("concat", 0) / n, 4) if n else 0.0,
        "modalities": {k: int(v) for k, v in sorted(df.group_by("modality").len().iter_rows())},
        "concat_modality_pairs": dict(sorted(pairs.items())),
        "concat_images_per_row": {str(k): int(v) for k, v in sorted(concat.group_by("n_images").len().iter_rows())},
        "labels_before": _labels(pool_df),
        "labels_after": _labels(df),
        "labels_hard_rows": _labels(df.filter(pl.col("kind") == "hard")),
        "labels_concat_rows": _labels(concat),
        "sizes": manifest.get("sizes", {}),
    }
