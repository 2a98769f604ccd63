"""Benchmark the ingest stage against a plain ``datasets.map`` doing the same normalisation.

Makes N text rows (WildGuardMix layout, Parquet) and M images (UnsafeBench layout: Parquet with the
Hugging Face Image struct) on the fly, then runs, each in its own process so peak RSS is its own:

- ``corpus``: the ingest stage (label mapping, image validation + storage by sha256, dedup, checkpoint);
- ``baseline``: ``datasets.load_dataset("parquet") .map(...)`` with the same per-row work (the same
  adapters' label mapping, ``normalise_image`` + ``store_image``, dedup keys) and ``to_parquet``;
- ``corpus`` again at a quarter of N and M, to show that peak memory follows the part size, not N.

Prints rows/s (text rows + images), images/s, peak RSS of the main process and of the largest image
worker process (sampled from /proc every 0.2 s), and the speed ratio against the baseline measured in
the same run.

    python scripts/bench_ingest.py --rows 120000 --images 20000
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the a of to and how can i make my you what is why do people should tell me about write story "
         "best way get find help friend house car money school work game music food water fire knife gun "
         "drug poison hack password bank steal kill hurt explain history science recipe travel city").split()


def make_text(path: Path, n: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    schema = pa.schema([("prompt", pa.string()), ("adversarial", pa.bool_()), ("response", pa.string()),
                        ("prompt_harm_label", pa.string()), ("response_refusal_label", pa.string()),
                        ("response_harm_label", pa.string()), ("subcategory", pa.string())])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, n, 10_000):
            rows = []
            for i in range(start, min(n, start + 10_000)):
                has_resp = rng.random() < 0.45
                rows.append({
                    "prompt": f"{i} " + " ".join(rng.choices(WORDS, k=rng.randint(8, 120))),
                    "adversarial": rng.random() < 0.5,
                    "response": " ".join(rng.choices(WORDS, k=rng.randint(20, 200))) if has_resp else None,
                    "prompt_harm_label": rng.choice(["harmful", "unharmful"]),
                    "response_refusal_label": rng.choice(["refusal", "compliance"]) if has_resp else None,
                    "response_harm_label": rng.choice(["harmful", "unharmful"]) if has_resp else None,
                    "subcategory": rng.choice(["benign", "violence", "fraud_assisting_illegal_activities"]),
                })
            w.write_table(pa.Table.from_pylist(rows, schema=schema))


def make_images(path: Path, m: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", img_t), ("safety_label", pa.string()), ("category", pa.string()),
                        ("source", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, m, 1000):
            rows = []
            for i in range(start, min(m, start + 1000)):
                im = Image.new("RGB", (rng.randint(96, 256), rng.randint(96, 256)),
                               tuple(rng.randrange(256) for _ in range(3)))
                d = ImageDraw.Draw(im)
                for _ in range(4):
                    x0, y0 = rng.randrange(im.width), rng.randrange(im.height)
                    d.rectangle([x0, y0, x0 + rng.randint(5, 60), y0 + rng.randint(5, 60)],
                                fill=tuple(rng.randrange(256) for _ in range(3)))
                d.text((4, 4), str(i), fill=(0, 0, 0))
                buf = io.BytesIO()
                im.save(buf, format="JPEG" if i % 2 else "PNG", quality=85)
                rows.append({"image": {"bytes": buf.getvalue(), "path": f"{i}.jpg"},
                             "safety_label": rng.choice(["Safe", "Unsafe"]), "category": "Violence",
                             "source": "Lexica", "text": "a caption"})
            w.write_table(pa.Table.from_pylist(rows, schema=schema))


RECIPE = """
name: bench
seed: 0
ingest:
  part_rows: {part_rows}
  heldout: null
  decontaminate: {{enabled: false}}
  sources:
    - {{name: wildguardtrain, adapter: wildguardmix, path: {text}}}
    - {{name: unsafebench, adapter: unsafebench, path: {images}}}
"""


def child_corpus(recipe: str, out: str) -> dict:
    from corpus.recipe import load_recipe
    from corpus.stages import ingest

    t = time.perf_counter()
    m = ingest.run(load_recipe(recipe), Path(out), force=True)
    return {"seconds": time.perf_counter() - t, "rows_out": m["rows_out"], "dropped": m["rows_dropped"]}


def child_baseline(text: str, images: str, out: str) -> dict:
    """The same per-row work as a plain datasets.map: adapters' mapping, image normalise + store, keys."""
    import datasets

    from corpus.dedup import content_key
    from corpus.images import normalise_image, store_image
    from corpus.recipe import SourceSpec
    from corpus.sources.base import Drop, adapter_class
    from corpus.stages.ingest import sample_id

    datasets.disable_progress_bars()
    run = Path(out)
    t = time.perf_counter()
    n = 0
    for name, adapter, path in (("wildguardtrain", "wildguardmix", text), ("unsafebench", "unsafebench", images)):
        cls = adapter_class(adapter)
        src = cls(SourceSpec(name=name, adapter=adapter, path=path))
        ds = datasets.load_dataset("parquet", data_files=path, split="train")
        if adapter == "unsafebench":
            ds = ds.cast_column("image", datasets.Image(decode=False))

        def fn(row, idx, src=src, name=name):
            drafts = src.convert(row, idx)
            if isinstance(drafts, Drop) or not drafts:
                return {"id": None, "key": None, "images": []}
            d = drafts[0]
            imgs = []
            for im in d.images:
                norm = normalise_image(im.data, max_pixels=89_478_485, max_bytes=50_000_000)
                imgs.append(store_image(norm, run)["path"])
            shas = [Path(p).stem for p in imgs]
            return {"id": sample_id(name, d.prompt, d.response, shas),
                    "key": content_key(d.prompt, d.response, shas), "images": imgs}

        mapped = ds.map(fn, with_indices=True, remove_columns=[c for c in ds.column_names if c != "prompt"])
        mapped.to_parquet(str(run / f"{name}.parquet"))
        n += len(mapped)
    return {"seconds": time.perf_counter() - t, "rows_out": n}


def _descendant_rss_mb(root: int) -> float:
    """Largest resident set (MB) among the live descendants of ``root`` (image workers), read from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(d.name)] = int(fields.get("PPid", "0").strip())
        rss[int(d.name)] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    best = 0.0
    for pid in parents:
        p = pid
        while p and p != root:
            p = parents.get(p, 0)
        if p == root and pid != root:
            best = max(best, rss.get(pid, 0.0))
    return best


class WorkerWatch:
    """Samples the image workers' RSS every 0.2 s while a run goes on."""

    def __init__(self) -> None:
        import os
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._root = os.getpid()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _descendant_rss_mb(self._root))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(cmd: list[str]) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"benchmark child failed: {' '.join(cmd)}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--images", type=int, default=2_000)
    ap.add_argument("--part-rows", type=int, default=5000)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        watch = WorkerWatch()
        res = child_corpus(*rest) if kind == "corpus" else child_baseline(*rest)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["worker_rss_mb"] = watch.stop()
        print(json.dumps(res))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        for label, n, m in (("full", args.rows, args.images), ("quarter", args.rows // 4, args.images // 4)):
            text, images = tmp / f"text-{label}.parquet", tmp / f"images-{label}.parquet"
            t = time.perf_counter()
            make_text(text, n, 1)
            make_images(images, m, 2)
            print(f"[{label}] made {n} text rows and {m} images in {time.perf_counter() - t:.1f}s", file=sys.stderr)
            recipe = tmp / f"recipe-{label}.yaml"
            recipe.write_text(RECIPE.format(part_rows=args.part_rows, text=text, images=images))
            me = [sys.executable, __file__, "--child"]
            results[f"corpus/{label}"] = {**measure(me + ["corpus", str(recipe), str(tmp / f"run-{label}")]),
                                          "rows": n, "images": m}
            if label == "full":
                results["baseline/full"] = {**measure(me + ["baseline", str(text), str(images),
                                                            str(tmp / "base-full")]), "rows": n, "images": m}
    base = results["baseline/full"]
    print(f"\ningest of {args.rows} text rows + {args.images} images (part_rows={args.part_rows})")
    print(f"{'run':16s} {'seconds':>8s} {'rows/s':>9s} {'images/s':>9s} {'peak RSS MB':>12s} {'worker MB':>10s} "
          f"{'speed vs base':>14s}")
    for name, r in results.items():
        rows_s = (r["rows"] + r["images"]) / r["seconds"]
        ratio = (base["seconds"] / r["seconds"]) * ((r["rows"] + r["images"]) / (base["rows"] + base["images"]))
        print(f"{name:16s} {r['seconds']:8.1f} {rows_s:9.0f} {r['images'] / r['seconds']:9.0f} "
              f"{r['peak_rss_mb']:12.0f} {r['worker_rss_mb']:10.0f} {ratio:14.2f}x")
    q, f = results["corpus/quarter"], results["corpus/full"]
    print(f"peak RSS full/quarter (corpus): {f['peak_rss_mb'] / q['peak_rss_mb']:.2f} (4x the data)")


if __name__ == "__main__":
    main()
