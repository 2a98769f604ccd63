#!/usr/bin/env python
"""Paper-scale benchmark: every data stage at two corpus sizes, peak memory, rate, and plain-polars baselines.

    python scripts/bench_scale.py --rows 30000 120000 [--engine local ray] [--work DIR]

Builds synthetic seed sources in their real layouts at GuardReasoner-VLTrain's modality shares
(WildGuardMix Parquet for text, UnsafeBench Parquet with HF image structs for image, SPA-VL Parquet for
text-image; images are small drawn PNGs/JPEGs, all distinct), starts the local fake teacher
(``corpus.testing.fake_openai``, answers that agree with the gold label), then runs
ingest -> synthesize -> filter -> export -> sample (OpenAI backend, k=4) -> concat -> rl-export -> stats,
each stage as its own ``python -m corpus.cli`` process. Per stage: seconds, rows/s, peak memory of the
process tree (summed PSS, sampled from /proc), disk. Then the growth ratio between the two sizes and, for
filter, concat and stats, a plain polars script doing the same work on the same files, run as its own
process in the same run (the ratio is stage seconds / baseline seconds, both including interpreter start).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

STAGES = ["ingest", "synthesize", "filter", "export", "sample", "concat", "rl-export"]
#: GuardReasoner-VLTrain: 63,799 text, 13,267 image, 46,030 text-image samples
SHARES = {"text": 63_799, "image": 13_267, "text_image": 46_030}
IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
WORDS = ("how do i make a safe plan for weekend travel with kids and a dog on a budget explain steps "
         "bypass the lock steal a car hurt someone write a poem about the sea cook pasta tax rules").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + f" #{rng.getrandbits(40):x}"


def _image(seed: int, fmt: str) -> bytes:
    rng = random.Random(seed)
    im = Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.randrange(56), rng.randrange(40)
        d.rectangle([x, y, x + rng.randrange(4, 20), y + rng.randrange(4, 20)],
                    fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def make_sources(root: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """The three seed files at the paper's modality shares; returns rows per modality."""
    total = sum(SHARES.values())
    n = {m: max(1, round(rows * s / total)) for m, s in SHARES.items()}
    rng = random.Random(seed)
    wgm = []
    for i in range(n["text"]):
        harmful = rng.random() < 0.5
        with_resp = i % 2 == 0
        wgm.append({"prompt": _text(rng, 30), "adversarial": False,
                    "response": _text(rng, 40) if with_resp else None,
                    "prompt_harm_label": "harmful" if harmful else "unharmful",
                    "response_refusal_label": ("refusal" if harmful else "compliance") if with_resp else None,
                    "response_harm_label": ("unharmful" if rng.random() < 0.7 else "harmful") if with_resp else None,
                    "subcategory": "others" if harmful else "benign"})
    schema = pa.schema([("prompt", pa.string()), ("adversarial", pa.bool_()), ("response", pa.string()),
                        ("prompt_harm_label", pa.string()), ("response_refusal_label", pa.string()),
                        ("response_harm_label", pa.string()), ("subcategory", pa.string())])
    _write(root / "wildguardmix/train/wildguard_train.parquet", pa.Table.from_pylist(wgm, schema=schema))
    ub = [{"image": {"bytes": _image(seed * 7919 + i, "PNG"), "path": f"{i}.png"},
           "safety_label": "Unsafe" if i % 2 else "Safe", "category": "Violence", "source": "Laion5B",
           "text": _text(rng, 8)} for i in range(n["image"])]
    _write(root / "unsafebench/data/train-00000-of-00001.parquet", pa.Table.from_pylist(ub, schema=pa.schema(
        [("image", IMG), ("safety_label", pa.string()), ("category", pa.string()), ("source", pa.string()),
         ("text", pa.string())], metadata=_hf({"image": {"_type": "Image"}}))))
    sp = [{"image": {"bytes": _image(10**9 + seed * 7919 + i, "JPEG"), "path": f"{i}.jpg"},
           "question": _text(rng, 20), "chosen": _text(rng, 30), "rejected": _text(rng, 30),
           "image_name": f"Violence/assault/{i}.jpg"} for i in range(n["text_image"])]
    _write(root / "spavl/data/train-00000-of-00001.parquet", pa.Table.from_pylist(sp, schema=pa.schema(
        [("image", IMG), ("question", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
         ("image_name", pa.string())], metadata=_hf({"image": {"_type": "Image"}}))))
    return n


def _hf(features: dict) -> dict[bytes, bytes]:
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2000)


def recipe(root: Path, base_url: str, cache: Path, part_rows: int) -> str:
    return json.dumps({
        "name": "bench_scale", "seed": 0,
        "ingest": {"part_rows": part_rows, "sources": [
            {"name": "wildguardtrain", "adapter": "wildguardmix",
             "path": str(root / "wildguardmix/train/wildguard_train.parquet")},
            {"name": "unsafebench_train", "adapter": "unsafebench",
             "path": str(root / "unsafebench/data/train-00000-of-00001.parquet")},
            {"name": "spavl_train", "adapter": "spavl", "path": str(root / "spavl/data/train-00000-of-00001.parquet"),
             "options": {"response": "random", "request_label": "harmful", "chosen_label": "unharmful",
                         "rejected_label": "harmful"}}],
            "heldout": {"name": "harm_image_test", "modalities": ["image"], "fraction": 0.2},
            "decontaminate": {"eval_sets": []}},
        "synthesize": {"mode": "online", "base_url": base_url, "model": "fake-teacher", "api_key_env": "BENCH_KEY",
                       "concurrency": 64, "cache_dir": str(cache / "teacher"), "progress": False},
        "sample": {"backend": "openai", "model": "fake-guard", "k": 4, "max_new_tokens": 64, "unit_rows": 512,
                   "progress": False, "openai": {"base_url": base_url, "api_key_env": "BENCH_KEY",
                                                  "concurrency": 64, "cache_dir": str(cache / "sample")}},
        "concat": {"total": 10**9, "share": 0.5},
    })


class Sampler:
    """Peak memory of a process and all its descendants, read from /proc every 50 ms: the sum of each
    process's PSS (shared pages split between the processes sharing them, so worker processes forked
    from one server are not counted twice); VmRSS where smaps_rollup cannot be read."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, 0

    def _tree(self) -> list[int]:
        kids: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                kids.setdefault(ppid, []).append(int(d.name))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    @staticmethod
    def _field(path: str, name: str) -> int | None:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            return None
        return None

    def sample(self) -> None:
        total = 0
        for p in self._tree():
            v = self._field(f"/proc/{p}/smaps_rollup", "Pss:")
            total += v if v is not None else (self._field(f"/proc/{p}/status", "VmRSS:") or 0)
        self.peak = max(self.peak, total)


def run_stage(args: list[str], env: dict) -> tuple[float, int, str]:
    """(seconds, peak tree RSS in bytes, stderr tail) of one CLI process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "corpus.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    s = Sampler(proc.pid)
    while proc.poll() is None:
        s.sample()
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"corpus {' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0, s.peak, err[-2000:]


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ---------------------------------------------------------------- plain polars baselines (the same work)

#: the final answers block (the last one: the greedy prefix ends before it) and its two labels
BEFORE = r"(?s)^(.*)(?:[Aa]nswers:|<result>)"
LAST = r"(?is)(?:answers:|<result>)\s*\n?\s*request:\s*(\w+)\s*\n\s*response:\s*(\w+)"
STEP_HEAD = r"(?m)^#{1,3}[ \t]*(?:Reasoning Step[ \t]*\d+|Conclusion)[^\n]*$"


def baseline_filter(run: Path) -> float:
    """The filter's work in polars: reserved tokens, teacher status, the final block and its labels, reasoning
    before it (tail rule and response task stripped, tokens neutralised), steps, label checks and fills,
    the SFT target, and kept/dropped parts with a reason."""
    from corpus.guard_format import RESERVED_TOKENS
    from corpus.reasoning import NEUTRAL_TOKENS

    t0 = time.perf_counter()
    lf = pl.scan_parquet(str(run / "synthesize" / "part-*.parquet"))
    out = pl.col("teacher_output").fill_null("")
    label = pl.col("teacher_output").str.extract_all(LAST).list.last()
    has_resp = pl.col("response").is_not_null()
    reserved = pl.any_horizontal(*(pl.col(c).fill_null("").str.contains_any(list(RESERVED_TOKENS))
                                   for c in ("prompt", "response")))
    df = lf.with_columns(
        t_req=label.str.extract(LAST, 1).str.to_lowercase(),
        t_resp=label.str.extract(LAST, 2).str.to_lowercase().replace("none", None),
        reasoning=out.str.extract(BEFORE, 1).str.replace(r"(?s)\s*(?:-{3,}\s*)+$", "").str.strip_chars(),
    ).with_columns(
        reasoning=pl.when(has_resp).then(pl.col("reasoning"))
        .otherwise(pl.col("reasoning").str.replace(r"(?s)# Task 2\b.*$", "").str.strip_chars())
        .str.replace_many(list(NEUTRAL_TOKENS), list(NEUTRAL_TOKENS.values())),
    ).with_columns(
        steps=pl.col("reasoning").str.replace_all(STEP_HEAD, "\x00").str.split("\x00").list.slice(1)
        .list.eval(pl.element().str.strip_chars()),
    ).with_columns(
        step_count=pl.col("steps").list.len(),
        request_label=pl.coalesce("request_label", "t_req"),
        response_label=pl.when(has_resp).then(pl.coalesce("response_label", "t_resp")),
    ).with_columns(
        drop_reason=pl.when(reserved).then(pl.lit("reserved_token"))
        .when(pl.col("teacher_status") != "ok").then(pl.lit("teacher_failed"))
        .when(out.str.strip_chars() == "").then(pl.lit("empty"))
        .when(pl.col("t_req").is_null()).then(pl.lit("no_answers"))
        .when(pl.col("step_count") == 0).then(pl.lit("no_steps"))
        .when(pl.col("t_req") != pl.col("request_label")).then(pl.lit("label_mismatch:request"))
        .when(has_resp & (pl.col("t_resp") != pl.col("response_label"))).then(pl.lit("label_mismatch:response"))
        .when(~has_resp & pl.col("t_resp").is_not_null()).then(pl.lit("label_mismatch:response")),
        sft_target=pl.concat_str(pl.lit("<think>\n"), "reasoning", pl.lit("\n</think>\n<result>\nRequest: "),
                                 pl.col("t_req"), pl.lit("\nResponse: "), pl.col("t_resp").fill_null("None"),
                                 pl.lit("\n</result>")),
    ).collect()
    df.filter(pl.col("drop_reason").is_null()).drop("drop_reason").write_parquet(run / "_baseline_filter.parquet")
    df.filter(pl.col("drop_reason").is_not_null()).write_parquet(run / "_baseline_filter_dropped.parquet")
    return time.perf_counter() - t0


def _plain_stitch(paths: list[Path], out_dir: Path, max_pixels: int = 1280 * 28 * 28) -> str:
    """Side by side at a common height within the pixel budget, PNG, stored by its sha256 (a plain script's
    stitching)."""
    import hashlib
    import math

    ims = [Image.open(p).convert("RGB") for p in paths]
    h = max(im.height for im in ims)
    widths = [max(1, round(im.width * h / im.height)) for im in ims]
    scale = min(1.0, math.sqrt(max_pixels / (sum(widths) * h)))
    h2 = max(1, int(h * scale))
    canvas = Image.new("RGB", (sum(max(1, int(w * scale)) for w in widths), h2), (255, 255, 255))
    x = 0
    for im, w in zip(ims, widths):
        w2 = max(1, int(w * scale))
        canvas.paste(im.resize((w2, h2), Image.Resampling.LANCZOS), (x, 0))
        x += w2
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    (out_dir / f"{digest}.png").write_bytes(buf.getvalue())
    return digest


def baseline_concat(run: Path) -> float:
    """The concat stage's row work from its own plan (the pairing is a shuffle of ids): join each planned row's
    members to the sample pool, concatenate prompts and responses, stitch the members' images, write Parquet."""
    t0 = time.perf_counter()
    plan = (pl.scan_parquet(str(run / "concat" / "part-*.parquet")).select("kind", "members")
            .with_columns(a=pl.col("members").list.get(0), b=pl.col("members").list.get(1, null_on_oob=True))
            .drop("members"))
    pool = (pl.scan_parquet(str(run / "sample" / "part-*.parquet")).filter(pl.col("hard"))
            .select("id", "prompt", "response", "request_label", "response_label",
                    pl.col("images").list.eval(pl.element().struct.field("path")).alias("image_paths")))
    rows = (plan.join(pool, left_on="a", right_on="id", how="left")
            .join(pool, left_on="b", right_on="id", how="left", suffix="_b")
            .with_columns(prompt=pl.concat_str("prompt", "prompt_b", separator="\n\n", ignore_nulls=True),
                          response=pl.concat_str("response", "response_b", separator="\n\n", ignore_nulls=True),
                          image_paths=pl.concat_list(pl.col("image_paths"), pl.col("image_paths_b").fill_null([])))
            .collect())
    out_dir = run / "_baseline_concat_images"
    out_dir.mkdir(exist_ok=True)
    stitched = [_plain_stitch([run / p for p in paths], out_dir) if len(paths) >= 2 and kind == "concat" else None
                for kind, paths in zip(rows["kind"].to_list(), rows["image_paths"].to_list())]
    rows.with_columns(stitched=pl.Series(stitched, dtype=pl.String)).write_parquet(run / "_baseline_concat.parquet")
    return time.perf_counter() - t0


def baseline_stats(run: Path) -> float:
    t0 = time.perf_counter()
    for stage in ("ingest", "synthesize", "filter", "sample", "concat"):
        parts = sorted((run / stage).glob("part-*.parquet"))
        if not parts:
            continue
        lf = pl.scan_parquet([str(p) for p in parts])
        cols = lf.collect_schema().names()
        group = [c for c in ("source", "modality", "request_label", "response_label") if c in cols]
        lf.group_by(group).agg(pl.len()).collect()
        if "step_count" in cols:
            lf.group_by("modality").agg(pl.col("step_count").sum(), pl.col("reasoning").str.len_chars().mean(),
                                        pl.len()).collect()
        dropped = sorted((run / stage / "dropped").glob("part-*.parquet"))
        if dropped:
            pl.scan_parquet([str(p) for p in dropped]).group_by("source", "drop_reason").agg(pl.len()).collect()
    return time.perf_counter() - t0


BASELINES = {"filter": baseline_filter, "concat": baseline_concat, "stats": baseline_stats}


def run_baseline(stage: str, run: Path) -> float:
    """Wall seconds of the baseline as its own process (interpreter start and imports included, as for a stage)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--baseline", stage, str(run)], check=True)
    return time.perf_counter() - t0


def bench_one(work: Path, rows: int, engine: str, base_url: str, part_rows: int) -> dict:
    root = work / f"src-{rows}"
    if not (root / "spavl").exists():
        make_sources(root, rows)
    run = work / f"run-{rows}-{engine}"
    cache = work / f"cache-{rows}"
    rec = work / f"recipe-{rows}.yaml"
    rec.write_text(recipe(root, base_url, cache, part_rows))
    env = {**os.environ, "BENCH_KEY": "sk-bench", "CORPUS_PROGRESS": "0", "CORPUS_CACHE_DIR": str(cache)}
    result: dict = {"rows": rows, "engine": engine, "stages": {}}
    for stage in STAGES + ["stats"]:
        args = ["stats", str(run)] if stage == "stats" else [stage, str(rec), "--out", str(run), "--engine", engine]
        secs, peak, _ = run_stage(args, env)
        m = json.loads((run / stage / "_manifest.json").read_text()) if stage != "stats" else {}
        n = m.get("rows_in") or m.get("rows_out") or 0
        entry = {"seconds": round(secs, 2), "rows_in": n, "rows_per_s": round(n / secs, 1) if n else None,
                 "peak_rss_mb": round(peak / 2**20, 1), "disk_mb": round(disk(run / stage) / 2**20, 2)}
        if stage in BASELINES and engine == "local":
            base = run_baseline(stage, run)
            entry["polars_seconds"] = round(base, 3)
            entry["vs_polars"] = round(secs / base, 2)
        result["stages"][stage] = entry
        print(f"  {rows:>7} {engine:5s} {stage:10s} {entry}", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[30_000, 120_000])
    ap.add_argument("--engine", nargs="+", default=["local"], choices=["local", "ray"])
    ap.add_argument("--part-rows", type=int, default=5000)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_scale"))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--baseline", nargs=2, metavar=("STAGE", "RUN"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.baseline:
        BASELINES[a.baseline[0]](Path(a.baseline[1]))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "corpus.testing.fake_openai", "--port", "0", "--no-bodies"],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("READY "):
            raise SystemExit(f"fake teacher did not start: {line!r}")
        base_url = line.split(" ", 1)[1]
        results = [bench_one(a.work, rows, eng, base_url, a.part_rows) for eng in a.engine for rows in a.rows]
    finally:
        server.terminate()
    print("\n| rows | engine | stage | s | rows/s | peak PSS MB | disk MB | vs polars |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for stage, e in r["stages"].items():
            print(f"| {r['rows']} | {r['engine']} | {stage} | {e['seconds']} | {e['rows_per_s']} | {e['peak_rss_mb']} "
                  f"| {e['disk_mb']} | {e.get('vs_polars', '')} |")
    for eng in a.engine:
        mine = [r for r in results if r["engine"] == eng]
        if len(mine) >= 2:
            lo, hi = mine[0], mine[-1]
            print(f"\nPSS growth {lo['rows']} -> {hi['rows']} rows ({eng}):")
            for stage in lo["stages"]:
                ratio = hi["stages"][stage]["peak_rss_mb"] / max(lo["stages"][stage]["peak_rss_mb"], 1e-9)
                print(f"  {stage:10s} {ratio:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
