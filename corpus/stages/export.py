"""Stage ``export``: write the filtered corpus as SFT training files, then re-load and check each one.

Under ``<run>/export/``:

- ``trl/train.jsonl``: TRL conversational prompt-completion rows, row shapes interleaved so ``datasets`` loads
  the file at any size (:mod:`corpus.jsonl_shapes`). ``prompt`` = [system, user] with content
  blocks (``{"type": "image"}`` where the guard input has an ``<image>`` token, ``{"type": "text", ...}``
  around it), ``completion`` = [{"role": "assistant", "content": sft_target}] (TRL puts the loss on the
  completion only), ``images`` = image paths; plus id/source/modality/labels for audits.
- ``llamafactory/<prefix>{Text,Image,TextImage}.json``: LLaMA-Factory sharegpt files, one per modality
  (``messages`` = [system, user, assistant], ``images`` = paths; the user text holds one ``<image>`` per
  image), and ``dataset_info.json`` registering them (formatting sharegpt, columns messages/images, tags).
  With ``image_paths: run_relative`` set LLaMA-Factory's ``media_dir`` to the run directory.
- ``hf/``: a ``datasets`` dataset (``save_to_disk``) with the TRL columns; ``images`` is a list of
  ``datasets.Image`` with embedded bytes, or (``hf_images: path``) a list of absolute path strings.
- ``part-NNNNN.parquet``: an index of the exported rows (schemas/exported.json), read by ``corpus stats``;
  ``dropped/``: rows not exported (image_missing); ``_manifest.json`` written last.

Every file is re-loaded with ``datasets`` after writing and checked (row counts, one image per ``<image>``
placeholder, image files exist, labels in range, target in guard format); a failure raises
``ExportError`` and no manifest is written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from corpus.guard_format import (
    HARM_LABELS,
    count_image_tokens,
    guard_messages,
    guard_messages_blocks,
    has_guard_format,
    parse_answers,
)
from corpus.jsonl_shapes import InterleavedJsonl
from corpus.schema import load_schema
from corpus.store import (
    MANIFEST,
    StageDir,
    file_sha256,
    part_name,
    stable_hash,
    write_json_atomic,
    write_parquet_atomic,
)

if TYPE_CHECKING:
    from corpus.recipe import Recipe

HELP = (
    "Write the filtered corpus as SFT files: TRL prompt/completion/images JSONL, LLaMA-Factory sharegpt JSON "
    "per modality with dataset_info.json, and a Hugging Face dataset on disk (images embedded or by path). "
    "Each file is re-loaded with `datasets` and checked before the stage completes."
)
STAGE = "export"
UPSTREAM = "filter"
SCHEMA_VERSION = 1
MODALITY_FILE = {"text": "Text", "image": "Image", "text_image": "TextImage"}
LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
           "system_tag": "system"}


class ExportConfig(BaseModel):
    """Recipe section ``export:``."""

    model_config = ConfigDict(extra="forbid")

    formats: list[Literal["trl", "llamafactory", "hf"]] = Field(
        default_factory=lambda: ["trl", "llamafactory", "hf"], min_length=1, description="Which files to write.")
    image_paths: Literal["absolute", "run_relative"] = Field(
        "absolute", description="Image paths in the TRL/LLaMA-Factory files: absolute, or relative to the run "
        "directory (then point LLaMA-Factory's media_dir at the run directory).")
    hf_images: Literal["embed", "path"] = Field(
        "embed", description="HF dataset images: a list of datasets.Image with the bytes embedded (self-contained), "
        "or a list of absolute path strings (save_to_disk always embeds Image columns; cast the column to "
        "List(Image()) after loading to decode).")
    llamafactory_prefix: str = Field("GuardReasoner-VLTrain", min_length=1,
                                     description="File/dataset name prefix: <prefix>Text.json, ...")


class ExportError(RuntimeError):
    """An export file failed its check after writing."""


# ---------------------------------------------------------------- rows


def _image_ref(run_dir: Path, rel: str, mode: str) -> str:
    return str((run_dir / rel).resolve()) if mode == "absolute" else rel


def _exportable(run_dir: Path, row: dict) -> str | None:
    """Drop detail when the row cannot be exported, else None."""
    missing = [img["path"] for img in row["images"] if not (run_dir / img["path"]).is_file()]
    return f"image files missing under the run directory: {missing[:3]}" if missing else None


def iter_filtered(run_dir: Path) -> Iterator[tuple[int, list[dict]]]:
    for unit, part in enumerate(StageDir(run_dir, UPSTREAM).parts()):
        yield unit, pq.read_table(part).to_pylist()


def trl_record(row: dict, images: list[str]) -> dict:
    return {
        "id": row["id"], "source": row["source"], "modality": row["modality"],
        "request_label": row["request_label"], "response_label": row["response_label"],
        "prompt": guard_messages_blocks(row["prompt"], row["response"], len(images)),
        "completion": [{"role": "assistant", "content": row["sft_target"]}],
        "images": images,
    }


def llamafactory_record(row: dict, images: list[str]) -> dict:
    return {"messages": [*guard_messages(row["prompt"], row["response"], len(images)),
                         {"role": "assistant", "content": row["sft_target"]}],
            "images": images}


def _hf_features(cfg: ExportConfig):
    from datasets import Features, Image, List, Value

    image = Image(decode=True) if cfg.hf_images == "embed" else Value("string")
    block = {"type": Value("string"), "text": Value("string")}
    return Features({
        "id": Value("string"), "source": Value("string"), "modality": Value("string"),
        "request_label": Value("string"), "response_label": Value("string"),
        "prompt": List({"role": Value("string"), "content": List(block)}),
        "completion": List({"role": Value("string"), "content": Value("string")}),
        "images": List(image),
    })


def _hf_rows(run_dir: str, skip_ids: list[str], embed: bool) -> Iterator[dict]:
    """Generator for ``Dataset.from_generator`` (module-level so datasets can fingerprint it)."""
    root, skip = Path(run_dir), set(skip_ids)
    for _, rows in iter_filtered(root):
        for row in rows:
            if row["id"] in skip:
                continue
            paths = [root / img["path"] for img in row["images"]]
            images = [{"bytes": p.read_bytes(), "path": p.name} if embed else str(p.resolve()) for p in paths]
            yield trl_record(row, images)  # type: ignore[arg-type]


# ---------------------------------------------------------------- writing


class _JsonArrayWriter:
    """Write a JSON array one element at a time (bounded memory)."""

    def __init__(self, path: Path):
        self.path, self.n = path, 0
        self.f = path.open("w", encoding="utf-8")
        self.f.write("[\n")

    def write(self, obj: Any) -> None:
        self.f.write((",\n" if self.n else "") + json.dumps(obj, ensure_ascii=False))
        self.n += 1

    def close(self) -> None:
        self.f.write("\n]\n")
        self.f.close()


def _index_row(row: dict) -> dict:
    return {"id": row["id"], "source": row["source"], "modality": row["modality"],
            "request_label": row["request_label"], "response_label": row["response_label"],
            "label_origin": row["label_origin"], "categories": row["categories"], "n_images": len(row["images"]),
            "step_count": row["step_count"], "target_chars": len(row["sft_target"])}


def _dropped_schema() -> pa.Schema:
    """Drop columns, then the full filtered row."""
    from corpus.stages.filter import filtered_schema

    return filtered_schema().dropped_arrow()


def write_exports(run_dir: Path, cfg: ExportConfig, out: Path) -> dict[str, Any]:
    """Write all files into ``out``; return counts (the manifest's figures)."""
    index_schema, dropped_schema = load_schema("exported"), load_schema("dropped")
    counts: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    skip_ids: list[str] = []
    lf_dir, trl_dir = out / "llamafactory", out / "trl"
    dropped_all: list[dict] = []
    with ExitStack() as stack:
        trl_f: InterleavedJsonl | None = None
        if "trl" in cfg.formats:  # shapes interleaved: `datasets` types each column from the file's first chunk
            trl_dir.mkdir(parents=True)
            trl_f = InterleavedJsonl(trl_dir / "train.jsonl")
        lf: dict[str, _JsonArrayWriter] = {}
        if "llamafactory" in cfg.formats:
            lf_dir.mkdir(parents=True)
        for unit, rows in iter_filtered(run_dir):
            index = []
            for row in rows:
                counts["rows_in"] += 1
                problem = _exportable(run_dir, row)
                if problem:
                    drops["image_missing"] += 1
                    skip_ids.append(row["id"])
                    dropped_all.append({**row, "drop_reason": "image_missing", "detail": problem, "record": None})
                    continue
                images = [_image_ref(run_dir, img["path"], cfg.image_paths) for img in row["images"]]
                if trl_f is not None:
                    trl_f.write(trl_record(row, images))
                if "llamafactory" in cfg.formats:
                    m = row["modality"]
                    if m not in lf:
                        lf[m] = _JsonArrayWriter(lf_dir / f"{cfg.llamafactory_prefix}{MODALITY_FILE[m]}.json")
                        stack.callback(lf[m].close)
                    lf[m].write(llamafactory_record(row, images))
                counts[f"rows:{row['modality']}"] += 1
                counts["rows_out"] += 1
                index.append(_index_row(row))
            write_parquet_atomic(index_schema.conform(pa.Table.from_pylist(index, schema=index_schema.arrow),
                                                      f"{STAGE}/{part_name(unit)}"), out / part_name(unit))
        if trl_f is not None:
            trl_f.close()
    if dropped_all:
        table = pa.Table.from_pylist(dropped_all, schema=_dropped_schema())
        write_parquet_atomic(dropped_schema.conform(table, f"{STAGE}/dropped"), out / "dropped" / part_name(0))
    if counts["rows_out"] == 0:
        raise ExportError(f"nothing to export: the filter stage holds {counts['rows_in']} rows and "
                          f"{sum(drops.values())} were dropped here ({dict(drops)}); see {run_dir / UPSTREAM}")
    exports: dict[str, Any] = {}
    if "trl" in cfg.formats:
        exports["trl"] = {"path": "trl/train.jsonl", "rows": counts["rows_out"]}
    if "llamafactory" in cfg.formats:
        info = {f"{cfg.llamafactory_prefix}{MODALITY_FILE[m]}": {
            "file_name": f"{cfg.llamafactory_prefix}{MODALITY_FILE[m]}.json", "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"}, "tags": dict(LF_TAGS)}
            for m in MODALITY_FILE if m in lf}
        write_json_atomic(lf_dir / "dataset_info.json", info)
        exports["llamafactory"] = {"path": "llamafactory", "datasets": {
            name: counts[f"rows:{m}"] for m in MODALITY_FILE if m in lf
            for name in [f"{cfg.llamafactory_prefix}{MODALITY_FILE[m]}"]}}
    if "hf" in cfg.formats:
        _write_hf(run_dir, cfg, out, skip_ids)
        exports["hf"] = {"path": "hf", "rows": counts["rows_out"], "images": cfg.hf_images}
    return {"counts": counts, "drops": drops, "exports": exports}


def _write_hf(run_dir: Path, cfg: ExportConfig, out: Path, skip_ids: list[str]) -> None:
    from datasets import Dataset

    cache = out / "_hf_cache"
    try:
        ds = Dataset.from_generator(
            _hf_rows, features=_hf_features(cfg), cache_dir=str(cache),
            gen_kwargs={"run_dir": str(run_dir), "skip_ids": skip_ids, "embed": cfg.hf_images == "embed"},
        )
        ds.save_to_disk(str(out / "hf"))
        del ds
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# ---------------------------------------------------------------- checking


def _fail(where: str, i: int, row: dict, msg: str) -> None:
    raise ExportError(f"export check failed: {where} row {i} (id {row.get('id', '?')}): {msg}")


def _check_images(where: str, i: int, row: dict, paths: list[str], run_dir: Path) -> None:
    for p in paths:
        path = Path(p) if Path(p).is_absolute() else run_dir / p
        if not path.is_file():
            _fail(where, i, row, f"image path does not exist: {p}")


def _check_target(where: str, i: int, row: dict, target: str, labels: tuple | None = None) -> None:
    if not has_guard_format(target):
        _fail(where, i, row, "assistant target is not <think>…</think><result>…</result>")
    ans = parse_answers(target)
    if ans.request not in HARM_LABELS or ans.response not in (*HARM_LABELS, None):
        _fail(where, i, row, f"labels out of range: request {ans.request!r}, response {ans.response!r}")
    if labels is not None and (ans.request, ans.response) != labels:
        _fail(where, i, row, f"target labels {(ans.request, ans.response)} differ from the row's {labels}")


def _rows_of(ds, chunk: int = 2048) -> Iterator[dict]:
    """The loaded dataset's rows as stored, a record batch at a time (row-by-row access through the dataset's
    formatter costs more than the checks)."""
    if isinstance(ds, list):
        yield from ds
        return
    for batch in ds.data.table.to_batches(max_chunksize=chunk):
        yield from batch.to_pylist()


def _load_json(path: Path, cache: Path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def check_trl(out: Path, run_dir: Path, expected: int, cache: Path) -> None:
    path = out / "trl" / "train.jsonl"
    ds = _load_json(path, cache) if expected else []
    if len(ds) != expected:
        raise ExportError(f"export check failed: {path} has {len(ds)} rows, expected {expected}")
    for i, row in enumerate(_rows_of(ds)):
        roles = [m["role"] for m in row["prompt"]]
        if roles != ["system", "user"]:
            _fail(str(path), i, row, f"prompt roles {roles}, expected ['system', 'user']")
        placeholders = sum(b["type"] == "image" for m in row["prompt"] for b in m["content"])
        if placeholders != len(row["images"]):
            _fail(str(path), i, row, f"{placeholders} image placeholders but {len(row['images'])} images")
        _check_images(str(path), i, row, row["images"], run_dir)
        if [m["role"] for m in row["completion"]] != ["assistant"]:
            _fail(str(path), i, row, "completion must be one assistant message")
        _check_target(str(path), i, row, row["completion"][0]["content"], (row["request_label"], row["response_label"]))
    del ds
    left = sorted(p.name for p in path.glob("cache-*.arrow"))
    if left:
        raise ExportError(f"export check failed: {path} holds cache files {left} (the check must not write)")


def check_llamafactory(out: Path, run_dir: Path, expected: dict[str, int], cache: Path) -> None:
    lf_dir = out / "llamafactory"
    info = json.loads((lf_dir / "dataset_info.json").read_text(encoding="utf-8"))
    if set(info) != set(expected):
        raise ExportError(f"export check failed: dataset_info.json lists {sorted(info)}, expected {sorted(expected)}")
    for name, entry in info.items():
        if entry.get("formatting") != "sharegpt" or entry.get("columns") != {"messages": "messages",
                                                                              "images": "images"}:
            raise ExportError(f"export check failed: dataset_info.json entry {name} is not sharegpt messages/images")
        if entry.get("tags") != LF_TAGS:
            raise ExportError(f"export check failed: dataset_info.json entry {name} has tags {entry.get('tags')}")
        path = lf_dir / entry["file_name"]
        if not path.is_file():
            raise ExportError(f"export check failed: {path} listed in dataset_info.json does not exist")
        ds = _load_json(path, cache)
        if len(ds) != expected[name]:
            raise ExportError(f"export check failed: {path} has {len(ds)} rows, expected {expected[name]}")
        for i, row in enumerate(_rows_of(ds)):
            msgs = row["messages"]
            roles = [m["role"] for m in msgs]
            if roles != ["system", "user", "assistant"]:  # sharegpt: optional system, then user/assistant pairs
                _fail(str(path), i, row, f"message roles {roles}, expected system, user, assistant")
            tokens = sum(count_image_tokens(m["content"]) for m in msgs)
            if tokens != len(row["images"]):
                _fail(str(path), i, row, f"{tokens} <image> tokens but {len(row['images'])} images")
            _check_images(str(path), i, row, row["images"], run_dir)
            _check_target(str(path), i, row, msgs[2]["content"])


def check_hf(out: Path, expected: int, embed: bool) -> None:
    from datasets import Image, List, Value, load_from_disk

    path = out / "hf"
    ds = load_from_disk(str(path))
    if len(ds) != expected:
        raise ExportError(f"export check failed: {path} has {len(ds)} rows, expected {expected}")
    feat = ds.features["images"]
    want = Image if embed else Value
    if not (isinstance(feat, List) and isinstance(feat.feature, want)):
        raise ExportError(f"export check failed: {path} column images is {feat}, expected List({want.__name__})")
    # the stored Arrow rows (an Image is {bytes, path} there): casting or mapping the loaded dataset would
    # write a cache-*.arrow file into the exported folder
    for i, row in enumerate(_rows_of(ds, 256)):
        placeholders = sum(b["type"] == "image" for m in row["prompt"] for b in m["content"])
        if placeholders != len(row["images"]):
            _fail(str(path), i, row, f"{placeholders} image placeholders but {len(row['images'])} images")
        for img in row["images"]:
            if embed and not img["bytes"]:
                _fail(str(path), i, row, "image bytes are not embedded")
            if not embed and not Path(img).is_file():
                _fail(str(path), i, row, f"image path does not exist: {img}")
        _check_target(str(path), i, row, row["completion"][0]["content"], (row["request_label"], row["response_label"]))
    del ds
    left = sorted(p.name for p in path.glob("cache-*.arrow"))
    if left:
        raise ExportError(f"export check failed: {path} holds cache files {left} (the check must not write)")


def validate(out: Path, run_dir: Path, cfg: ExportConfig, summary: dict[str, Any]) -> None:
    """Re-load every written file with ``datasets`` and check it; raise ExportError on the first problem."""
    cache = out / "_check_cache"
    try:
        exports = summary["exports"]
        if "trl" in exports:
            check_trl(out, run_dir, exports["trl"]["rows"], cache)
        if "llamafactory" in exports:
            check_llamafactory(out, run_dir, exports["llamafactory"]["datasets"], cache)
        if "hf" in exports:
            check_hf(out, exports["hf"]["rows"], cfg.hf_images == "embed")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# ---------------------------------------------------------------- stage


def _config(cfg: ExportConfig, run_dir: Path) -> dict:
    conf: dict[str, Any] = {"export": cfg.model_dump()}
    if cfg.image_paths == "absolute" or cfg.hf_images == "path":  # paths inside the files name the run dir
        conf["run_dir"] = str(run_dir.resolve())
    return conf


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    cfg: ExportConfig = recipe.export
    upstream = StageDir(run_dir, UPSTREAM)
    key = {"schema": "exported", "schema_version": SCHEMA_VERSION, "config_hash": stable_hash(_config(cfg, run_dir)),
           "input_fingerprint": upstream.fingerprint()}
    out = run_dir / STAGE
    existing = StageDir(run_dir, STAGE).manifest()
    if existing is not None and not force and all(existing.get(k) == v for k, v in key.items()):
        return existing
    started = time.time()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    summary = write_exports(run_dir, cfg, out)
    validate(out, run_dir, cfg, summary)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    hashes = [(p.relative_to(out).as_posix(), file_sha256(p)) for p in files]
    counts, drops = summary["counts"], summary["drops"]
    now = time.time()
    manifest = {
        "stage": STAGE, **key,
        "rows_in": counts["rows_in"], "rows_out": counts["rows_out"], "rows_dropped": sum(drops.values()),
        "drop_reasons": dict(sorted(drops.items())),
        "exports": summary["exports"],
        "image_paths": cfg.image_paths,
        "parts": len(StageDir(run_dir, STAGE).parts()),
        "counters": {k: v for k, v in sorted(counts.items()) if k.startswith("rows:")},
        "validated": True,
        "files": [{"path": p, "sha256": h} for p, h in hashes],
        "output_fingerprint": stable_hash(hashes),
        "timings": {"this_attempt_started": started, "finished": now, "this_attempt_seconds": round(now - started, 3)},
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def stats(run_dir: Path | str) -> dict[str, Any]:
    """Rows per export file (from the manifest)."""
    m = StageDir(run_dir, STAGE).manifest()
    if not m:
        return {}
    rows = []
    for fmt, info in m.get("exports", {}).items():
        if fmt == "llamafactory":
            rows += [{"format": fmt, "file": f"llamafactory/{name}.json", "rows": n}
                     for name, n in info["datasets"].items()]
        else:
            rows.append({"format": fmt, "file": info["path"], "rows": info["rows"]})
    return {"files": rows, "image_paths": m.get("image_paths"), "validated": m.get("validated")}
