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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from corpus.concat import choose_pairs, count_pairs, merge_rows, plan_sizes, round_half_up, unlabelled_reason
from corpus.schema import load_schema
from corpus.store import StageDir, StageWriter, stable_hash

if TYPE_CHECKING:
    from corpus.concat import ConcatConfig
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


def _read_pool(run_dir: Path) -> tuple[list[dict], int]:
    up = StageDir(run_dir, UPSTREAM)
    names = load_schema("sample").names
    table = up.read(columns=names + ["hard"])
    if table is None:
        return [], 0
    rows = table.to_pylist()
    hard = [r for r in rows if r.pop("hard")]
    ids = Counter(r["id"] for r in hard)
    dup = sorted(i for i, n in ids.items() if n > 1)
    if dup:
        raise ValueError(f"concat: the sample stage has duplicate ids among hard rows: {dup[:5]}")
    hard.sort(key=lambda r: r["id"])
    return hard, len(rows)


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

    hard, rows_in = _read_pool(run_dir)
    pool, dropped = [], []
    for r in hard:
        reason = unlabelled_reason(r)
        detail = f"request={r['request_label']!r} response_label={r['response_label']!r}" if reason else None
        if reason is None:
            missing = [img["path"] for img in r["images"] if not (run_dir / img["path"]).is_file()]
            if missing:
                reason, detail = "image:missing", f"not found under {run_dir}: {missing}"
        if reason:
            dropped.append({**r, "drop_reason": reason, "detail": detail, "record": None})
        else:
            pool.append(r)

    entries, left_out, sizes = plan(pool, cfg, config["seed"])
    for i in left_out:
        dropped.append({**pool[i], "drop_reason": "sampled_out", "detail": "beyond the RL set size", "record": None})
    dropped.sort(key=lambda r: r["id"])

    sample_arrow = load_schema("sample").arrow
    units = [entries[k:k + cfg.part_rows] for k in range(0, len(entries), cfg.part_rows)] or [[]]
    done = writer.done_units()
    for unit, chunk in enumerate(units):
        if unit in done:
            continue
        out = []
        for e in chunk:
            if e[0] == "hard":
                out.append({**pool[e[1]], "kind": "hard", "members": [pool[e[1]]["id"]]})
            else:
                out.append(build_concat_row(pool[e[1]], pool[e[2]], cfg, run_dir))
        counters: dict[str, int] = {}
        if unit == 0:
            counters = {"rows_in": rows_in, "hard_in": len(hard), "not_hard": rows_in - len(hard),
                        "pool": len(pool), "hard_out": sizes["hard"], "concat_out": sizes["concat"]}
        writer.write_unit(
            unit,
            pa.Table.from_pylist(out, schema=schema.arrow),
            dropped=_dropped_table(dropped, sample_arrow) if unit == 0 and dropped else None,
            counters=counters,
        )
    return writer.finish(extra={"sizes": sizes})


# ---------------------------------------------------------------- stats


def _labels(rows: list[dict]) -> dict[str, dict[str, int]]:
    req = Counter(str(r["request_label"]) for r in rows)
    resp = Counter(str(r["response_label"]) for r in rows)
    return {"request": dict(sorted(req.items())), "response": dict(sorted(resp.items()))}


def stats(run_dir: Path | str) -> dict:
    """RL set composition: hard vs concatenated, modality pairs, label balance before and after concatenation."""
    run_dir = Path(run_dir)
    out = StageDir(run_dir, STAGE)
    table = out.read(columns=["kind", "modality", "request_label", "response_label", "meta", "images"])
    if table is None:
        return {}
    rows = table.to_pylist()
    kinds = Counter(r["kind"] for r in rows)
    pairs: Counter[str] = Counter()
    image_counts: Counter[int] = Counter()
    for r in rows:
        if r["kind"] == "concat":
            mods = json.loads(r["meta"])["concat"]["member_modalities"]
            pairs["+".join(sorted(mods))] += 1
            image_counts[len(r["images"])] += 1
    hard_pool, _ = _read_pool(run_dir) if StageDir(run_dir, UPSTREAM).parts() else ([], 0)
    manifest = out.manifest() or {}
    return {
        "rows": len(rows),
        "kinds": dict(sorted(kinds.items())),
        "concat_share": round(kinds.get("concat", 0) / len(rows), 4) if rows else 0.0,
        "modalities": dict(sorted(Counter(r["modality"] for r in rows).items())),
        "concat_modality_pairs": dict(sorted(pairs.items())),
        "concat_images_per_row": {str(k): v for k, v in sorted(image_counts.items())},
        "labels_before": _labels(hard_pool),
        "labels_after": _labels(rows),
        "labels_hard_rows": _labels([r for r in rows if r["kind"] == "hard"]),
        "labels_concat_rows": _labels([r for r in rows if r["kind"] == "concat"]),
        "sizes": manifest.get("sizes", {}),
    }
