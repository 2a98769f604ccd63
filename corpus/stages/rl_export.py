"""Stage ``rl-export``: write the RL set (concat stage) in the layouts RL trainers read.

Under ``<run>/rl-export/``:

- ``trl/train.parquet``: TRL GRPO. ``prompt`` is conversational with multimodal content blocks
  (system = guard instruction; user = the guard text with one ``{"type": "image"}`` block per image at
  the ``<image>`` positions), ``images`` a list of HF ``Image`` features (absolute paths; decoded by
  ``datasets``), label columns ``request_label`` / ``response_label`` and ``answer`` for the reward.
- ``easyr1/train.parquet``: EasyR1. ``prompt`` is the guard user text with ``<image>`` placeholders,
  ``answer`` the ground truth exactly as the reward's ``compute_score`` gets it (``ground_truth``): the
  guard ``<result>`` block, read with ``corpus.guard_format.parse_answers``; ``images`` absolute paths.
  EasyR1 datasets have no system turn, so ``easyr1/format_prompt.jinja`` puts the guard instruction
  before the text (pass it as ``data.format_prompt``).
- ``verl/train.parquet``: verl. ``prompt`` is the chat (system + user with ``<image>`` placeholders),
  ``images`` ``[{"image": path}]``, ``reward_model.ground_truth`` = the same answer, ``extra_info``
  with the labels.
- ``swift/train.jsonl``: ms-swift GRPO. ``messages`` (system + user with ``<image>`` tags),
  ``images`` paths, label columns and ``solution`` (the answer) for reward plugins.

Image paths are absolute (the images stay once under ``<run>/images/``), so the resolved run
directory is part of the stage key: moving the run and re-running re-exports. Each file is read back
and checked (placeholders = images, files exist, labels in range, answer parses to the labels) before
the manifest is written; a failed check raises ``ExportInvalid`` naming the file and rows. A row whose
text holds a reserved guard token (``<image>``, ``<think>``, ...) cannot be exported faithfully: it is
left out of every format and listed in the manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from corpus.engine.progress import RowProgress
from corpus.guard_format import (
    HARM_LABELS,
    count_image_tokens,
    guard_messages,
    guard_messages_blocks,
    guard_system_prompt,
    parse_answers,
    reserved_tokens_in,
    result_block,
)
from corpus.jsonl_shapes import InterleavedJsonl
from corpus.store import MANIFEST, StageDir, file_sha256, stable_hash, write_json_atomic
from corpus.training.config import clip_schedule

if TYPE_CHECKING:
    from corpus.recipe import Recipe

HELP = (
    "Write the RL set in trainer layouts under <run>/rl-export/: TRL GRPO (conversational prompt with "
    "image blocks), EasyR1 (prompt with <image> placeholders, answer, images), verl and ms-swift "
    "(messages, images, labels); each export is re-read and validated."
)
STAGE = "rl-export"
UPSTREAM = "concat"
Format = Literal["trl", "easyr1", "verl", "swift"]
FILES: dict[str, str] = {"trl": "trl/train.parquet", "easyr1": "easyr1/train.parquet",
                         "verl": "verl/train.parquet", "swift": "swift/train.jsonl"}
MODALITIES = ("text", "image", "text_image")
REQUEST_LABELS = HARM_LABELS
#: rows buffered per file before they are appended (one Parquet row group)
WRITE_CHUNK = 2048


def modality_file(fmt: str, modality: str) -> str:
    """Path of a format's one-modality file: ``trl/train.image.parquet``, ``swift/train.text.jsonl``, ..."""
    stem, ext = FILES[fmt].rsplit(".", 1)
    return f"{stem}.{modality}.{ext}"
RESPONSE_LABELS = (*HARM_LABELS, None)


class RlExportConfig(BaseModel):
    """Recipe section ``rl_export:``."""

    model_config = ConfigDict(extra="forbid")

    formats: list[Format] = Field(default_factory=lambda: ["trl", "easyr1", "verl", "swift"],
                                  description="Which trainer layouts to write.")
    data_source: str = Field("guardreasoner_vl", description="verl `data_source` column (routes the reward).")


class ExportInvalid(ValueError):
    """An export file failed its check after writing."""


# ---------------------------------------------------------------- rows


def answer_text(request_label: str, response_label: str | None) -> str:
    """The ground-truth answer string: the guard ``<result>`` block (what a reward compares against)."""
    return result_block(request_label, response_label)


def _row_views(row: dict, run_dir: Path, data_source: str) -> dict[str, dict]:
    n = len(row["images"])
    paths = [str((run_dir / img["path"]).resolve()) for img in row["images"]]
    system, user = guard_messages(row["prompt"], row["response"], n)
    req, resp = row["request_label"], row["response_label"]
    answer = answer_text(req, resp)
    labels = {"request_label": req, "response_label": resp}
    return {
        "trl": {"id": row["id"], "kind": row["kind"],
                "prompt": guard_messages_blocks(row["prompt"], row["response"], n),
                "images": paths, **labels, "answer": answer},
        "easyr1": {"id": row["id"], "kind": row["kind"], "prompt": user["content"], "answer": answer,
                   "images": paths},
        "verl": {"data_source": data_source, "prompt": [system, user], "images": [{"image": p} for p in paths],
                 "ability": "safety", "reward_model": {"style": "rule", "ground_truth": answer},
                 "extra_info": {"id": row["id"], "kind": row["kind"], **labels}},
        "swift": {"id": row["id"], "kind": row["kind"], "messages": [system, user], "images": paths,
                  **labels, "solution": answer},
    }


def _trl_features():
    from datasets import Features, Image, List, Value

    return Features({
        "id": Value("string"),
        "kind": Value("string"),
        "prompt": List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}),
        "images": List(Image()),
        "request_label": Value("string"),
        "response_label": Value("string"),
        "answer": Value("string"),
    })


_MSG = pa.struct([("role", pa.string()), ("content", pa.string())])
ARROW = {
    "easyr1": pa.schema([("id", pa.string()), ("kind", pa.string()), ("prompt", pa.string()),
                         ("answer", pa.string()), ("images", pa.list_(pa.string()))]),
    "verl": pa.schema([
        ("data_source", pa.string()), ("prompt", pa.list_(_MSG)),
        ("images", pa.list_(pa.struct([("image", pa.string())]))), ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([("id", pa.string()), ("kind", pa.string()), ("request_label", pa.string()),
                                  ("response_label", pa.string())])),
    ]),
}


def _tmp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _table(fmt: str, rows: list[dict]) -> pa.Table:
    if fmt == "trl":
        from datasets import Dataset

        # the Arrow table of a `datasets.Dataset` carries the HF features (Image) in its schema metadata
        return Dataset.from_list(rows, features=_trl_features()).data.table
    if fmt in ARROW:
        return pa.Table.from_pylist(rows, schema=ARROW[fmt])
    raise ValueError(f"unknown RL export format {fmt!r}")


class FormatWriter:
    """Append rows of one format to one file, a chunk at a time (Parquet row groups or JSONL lines), under a
    temporary name renamed into place by :meth:`close`: memory holds one chunk, not the file."""

    def __init__(self, fmt: str, path: Path):
        if fmt not in FILES:
            raise ValueError(f"unknown RL export format {fmt!r}")
        self.fmt, self.path, self.tmp = fmt, path, _tmp(path)
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        # JSON Lines with row shapes interleaved: `datasets` (ms-swift's loader) types columns from the first chunk
        self._text = InterleavedJsonl(path) if fmt == "swift" else None

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self._text is not None:
            for r in rows:
                self._text.write(r)
        else:
            table = _table(self.fmt, rows)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            self._parquet.write_table(table)
        self.rows += len(rows)

    def close(self) -> None:
        if self._text is not None:
            self._text.close()  # merged into place under its own temporary name
            return
        if self._parquet is None:  # no rows: an empty file with the format's schema
            pq.write_table(_table(self.fmt, []), self.tmp, compression="zstd")
        else:
            self._parquet.close()
        os.replace(self.tmp, self.path)


def write_format(fmt: str, rows: list[dict], path: Path) -> None:
    """Write a whole format file at once (small exports, tests)."""
    w = FormatWriter(fmt, path)
    w.write(rows)
    w.close()


# ---------------------------------------------------------------- validation


def iter_format(fmt: str, path: Path, chunk: int = 2048) -> Iterator[list[dict]]:
    """Read an export file back as chunks of row dicts (TRL images as stored path dicts, not decoded)."""
    if fmt != "swift":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk):
            yield batch.to_pylist()
        return
    buf: list[dict] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                buf.append(json.loads(line))
                if len(buf) >= chunk:
                    yield buf
                    buf = []
    if buf:
        yield buf


def load_format(fmt: str, path: Path) -> list[dict]:
    """Read an export file back as row dicts (TRL images as stored path dicts, not decoded)."""
    return [row for rows in iter_format(fmt, path) for row in rows]


def _placeholders_and_images(fmt: str, row: dict) -> tuple[int, list[str]]:
    if fmt == "trl":
        n = sum(1 for m in row["prompt"] for b in m["content"] if b["type"] == "image")
        n += sum(count_image_tokens(b["text"] or "") for m in row["prompt"] for b in m["content"])
        return n, [img["path"] if isinstance(img, dict) else img for img in row["images"]]
    if fmt == "easyr1":
        return count_image_tokens(row["prompt"]), list(row["images"])
    if fmt == "verl":
        return sum(count_image_tokens(m["content"]) for m in row["prompt"]), [i["image"] for i in row["images"]]
    return sum(count_image_tokens(m["content"]) for m in row["messages"]), list(row["images"])


def _labels_and_answer(fmt: str, row: dict) -> tuple[str | None, str | None, str, bool]:
    if fmt == "trl":
        return row["request_label"], row["response_label"], row["answer"], True
    if fmt == "easyr1":
        a = parse_answers(row["answer"])
        return a.request, a.response, row["answer"], False
    if fmt == "verl":
        info = row["extra_info"]
        return info["request_label"], info["response_label"], row["reward_model"]["ground_truth"], True
    return row["request_label"], row["response_label"], row["solution"], True


def validate_rows(fmt: str, rows: list[dict], extra_text: str = "", start: int = 0) -> list[str]:
    """Problems of an export's rows (empty when valid): placeholders vs images, files, labels, answers.
    ``start``: the file row number of ``rows[0]`` (rows are checked a chunk at a time)."""
    problems = []
    if count_image_tokens(extra_text):
        problems.append(f"{fmt}: the prompt template holds {count_image_tokens(extra_text)} <image> placeholders")
    for i, row in enumerate(rows, start):
        n_ph, paths = _placeholders_and_images(fmt, row)
        if n_ph != len(paths):
            problems.append(f"{fmt} row {i}: {n_ph} image placeholders but {len(paths)} images")
        missing = [p for p in paths if not p or not Path(p).is_file()]
        if missing:
            problems.append(f"{fmt} row {i}: image files missing: {missing[:3]}")
        req, resp, answer, has_columns = _labels_and_answer(fmt, row)
        if req not in REQUEST_LABELS:
            problems.append(f"{fmt} row {i}: request label {req!r} not in {REQUEST_LABELS}")
        if resp not in RESPONSE_LABELS:
            problems.append(f"{fmt} row {i}: response label {resp!r} not in {RESPONSE_LABELS}")
        parsed = parse_answers(answer)
        if has_columns and (parsed.request, parsed.response) != (req, resp):
            problems.append(f"{fmt} row {i}: answer {answer!r} does not parse to ({req!r}, {resp!r})")
        if len(problems) > 20:
            problems.append("... (more problems not listed)")
            break
    return problems


def validate_export(fmt: str, path: Path, extra_text: str = "") -> int:
    """Re-read an export file and check it; returns its row count or raises ExportInvalid."""
    n = 0
    for rows in iter_format(fmt, path):
        problems = validate_rows(fmt, rows, extra_text if n == 0 else "", start=n)
        if problems:
            raise ExportInvalid(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems))
        n += len(rows)
    if n == 0 and count_image_tokens(extra_text):
        raise ExportInvalid(f"{path}: " + "\n".join(validate_rows(fmt, [], extra_text)))
    return n


# ---------------------------------------------------------------- reward files


def reward_files(recipe: Recipe | None = None) -> dict[str, str]:
    """Stand-alone reward files shipped next to the exports (``corpus.training.rewards.reward_file_source``:
    standard library only, the recipe's ``train_rl`` reward settings written into them)."""
    from corpus.training.config import TrainRLConfig, reward_settings
    from corpus.training.rewards import REWARD_FILES, reward_file_source

    settings = reward_settings(recipe.train_rl if recipe is not None else TrainRLConfig())
    return {rel: reward_file_source(trainer, settings) for trainer, rel in REWARD_FILES.items()}


def easyr1_format_prompt() -> str:
    """EasyR1 ``format_prompt`` template: the guard instruction, then the row's text (raw, never re-expanded)."""
    return "{% raw %}" + guard_system_prompt().rstrip("\n") + "{% endraw %}\n\n{{ content }}\n"


def export_readmes(recipe: Recipe | None, out: Path, formats: list[str]) -> dict[str, str]:
    """``README.md`` (which trainer needs which file) and ``verl/README.md`` (the ``custom_reward_function``
    lines), with the absolute paths of this export."""
    from corpus.training.config import TrainRLConfig

    rl = recipe.train_rl if recipe is not None else TrainRLConfig()
    budget = rl.max_completion_length
    o = str(out.resolve())
    mods = ", ".join(f"`{Path(modality_file('trl', m)).name}`" for m in MODALITIES)
    top = f"""# RL export

One mixed file per trainer (`train.parquet` / `train.jsonl`: every RL row) and one file per modality
({mods}; only modalities with rows are written). Ground truth is the guard `<result>` block; the
reward files import nothing from the toolkit (standard library only, the recipe's reward settings written
into them; the completion budget is the recipe's `train_rl.max_completion_length` = {budget} unless the
trainer passes its own).

## Which trainer needs what

- **`corpus train rl`** (the toolkit's TRL GRPOTrainer subclass): `trl/train.parquet`, the mixed file.
  Its subclass batches rows with and without images together; reward and dynamic clip built in.
- **plain TRL `GRPOTrainer`**: it crashes on a batch mixing image and text-only rows (`TypeError ...
  NoneType` in transformers' image fetching). Train on one modality file at a time
  (`trl/train.text.parquet`, or `trl/train.image.parquet` / `trl/train.text_image.parquet`, whose rows all
  have images and may be concatenated). Reward: `from guard_reward import guard_reward` out of
  `{o}/trl/guard_reward.py`, `GRPOTrainer(reward_funcs=[guard_reward], ...)` (lengths from the
  completion ids; TRL passes no budget, so the recipe's {budget} applies).
- **EasyR1**: `data.train_files={o}/easyr1/train.parquet data.prompt_key=prompt data.answer_key=answer
  data.image_key=images data.format_prompt={o}/easyr1/format_prompt.jinja
  worker.reward.reward_function={o}/easyr1/guard_reward.py:compute_score
  worker.reward.reward_function_kwargs='{{max_response_length: {budget}}}'` (pass your
  `data.max_response_length` there). Mixed batches were not checked here: use the modality files if your
  version cannot batch them.
- **verl**: `{o}/verl/train.parquet`; reward lines in `verl/README.md`. Mixed batches: as for EasyR1.
- **ms-swift**: `--dataset {o}/swift/train.jsonl --external_plugins {o}/swift/guard_reward_plugin.py
  --reward_funcs guard_safety`; the plugin reads ms-swift's `--max_completion_length` and tokenizer.
  Mixed batches: as for EasyR1.

**Dynamic clipping exists only on the toolkit's TRL path** (`corpus train rl`). EasyR1, verl and ms-swift
train with a constant clip ratio (e.g. EasyR1 `worker.actor.clip_ratio_low/high`, verl
`actor_rollout_ref.actor.clip_ratio`); nothing shipped here changes that. `clip_schedule.json` lists the
schedule of the recipe (`train_rl.clip`: the range at every schedule step, one step per rollout batch
by default, as the paper's EasyR1 fork counts) for anyone who patches their trainer to follow it.
"""
    verl = f"""# verl

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info=None)`; `guard_reward.py`
returns a dict whose `score` is the reward (the other keys are its terms). Add to your verl config:

```yaml
data:
  train_files: {o}/verl/train.parquet
  image_key: images
custom_reward_function:
  path: {o}/verl/guard_reward.py
  name: compute_score
  reward_kwargs:
    max_response_length: ${{data.max_response_length}}
```

or on the command line:

```
custom_reward_function.path={o}/verl/guard_reward.py custom_reward_function.name=compute_score \\
  +custom_reward_function.reward_kwargs.max_response_length=${{data.max_response_length}}
```

Without `reward_kwargs` the recipe's budget ({budget}) applies. verl passes no token count, so the length
is estimated as characters / `chars_per_token` (an `extra_info["response_length"]` is used when present).
"""
    files = {"README.md": top}
    if "verl" in formats:
        files["verl/README.md"] = verl
    return files


# ---------------------------------------------------------------- stage


def _files_ok(out: Path, manifest: dict) -> bool:
    return all((out / rel).is_file() and file_sha256(out / rel) == sha for rel, sha in manifest.get("files", []))


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    cfg = recipe.rl_export
    up = StageDir(run_dir, UPSTREAM)
    if not up.complete:
        raise FileNotFoundError(f"rl-export needs the finished `{UPSTREAM}` stage in {run_dir}; run `corpus concat`")
    extras = reward_files(recipe)
    if "easyr1" in cfg.formats:
        extras["easyr1/format_prompt.jinja"] = easyr1_format_prompt()
    extras = {k: v for k, v in extras.items() if k.split("/")[0] in cfg.formats}
    extras.update(export_readmes(recipe, run_dir / STAGE, cfg.formats))
    extras["clip_schedule.json"] = json.dumps(clip_schedule(recipe.train_rl, values=True), indent=2) + "\n"
    key = {
        "config_hash": stable_hash(cfg.model_dump()),
        "input_fingerprint": up.fingerprint(),
        "run_dir": str(run_dir.resolve()),
        "extras_hash": stable_hash(extras),
    }
    out = run_dir / STAGE
    old = StageDir(run_dir, STAGE).manifest()
    if old is not None and not force and all(old.get(k) == v for k, v in key.items()) and _files_ok(out, old):
        return old
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.time()
    for rel, text in extras.items():
        p = out / rel
        tmp = _tmp(p)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    # stream: one concat part at a time, each format's rows appended to its files a chunk at a time
    writers = {f: FormatWriter(f, out / FILES[f]) for f in cfg.formats}
    by_modality: dict[tuple[str, str], FormatWriter] = {}
    buffers: dict[tuple[str, str | None], list[dict]] = {}
    left_out: dict[str, list[str]] = {}
    kinds: Counter[str] = Counter()
    rows_in = 0
    progress = RowProgress(STAGE, up.num_rows())

    def flush(key: tuple[str, str | None]) -> None:
        fmt, mod = key
        if mod is None:
            writers[fmt].write(buffers.pop(key, []))
            return
        if key not in by_modality:
            by_modality[key] = FormatWriter(fmt, out / modality_file(fmt, mod))
        by_modality[key].write(buffers.pop(key, []))

    for table in up.iter_tables():
        for row in table.to_pylist():
            rows_in += 1
            kinds[row["kind"]] += 1
            bad = sorted({t for text in (row["prompt"], row["response"]) for t in reserved_tokens_in(text)})
            if bad:
                left_out.setdefault("reserved_token:" + ",".join(bad), []).append(row["id"])
                continue
            v = _row_views(row, run_dir, cfg.data_source)
            keys_of = [(None,)] if row["modality"] not in MODALITIES else [(None,), (row["modality"],)]
            for f in cfg.formats:
                for (mod,) in keys_of:
                    buf = buffers.setdefault((f, mod), [])
                    buf.append(v[f])
                    if len(buf) >= WRITE_CHUNK:
                        flush((f, mod))
        progress.update(table.num_rows)
    progress.close()
    for buffered in list(buffers):
        flush(buffered)
    for w in [*writers.values(), *by_modality.values()]:
        w.close()

    formats: dict[str, Any] = {}
    data_files: list[str] = []
    for f in cfg.formats:
        template = extras.get("easyr1/format_prompt.jinja", "") if f == "easyr1" else ""
        formats[f] = {"path": FILES[f], "rows": validate_export(f, out / FILES[f], template), "by_modality": {}}
        data_files.append(FILES[f])
        for m in MODALITIES:
            if (f, m) in by_modality:
                rel = modality_file(f, m)
                formats[f]["by_modality"][m] = {"path": rel, "rows": validate_export(f, out / rel, template)}
                data_files.append(rel)

    files = sorted([(rel, file_sha256(out / rel)) for rel in data_files]
                   + [(rel, file_sha256(out / rel)) for rel in extras])
    now = time.time()
    manifest = {
        "stage": STAGE,
        **key,
        "rows_in": rows_in,
        "rows_out": rows_in - sum(len(v) for v in left_out.values()),
        "rows_dropped": sum(len(v) for v in left_out.values()),
        "drop_reasons": {k: len(v) for k, v in sorted(left_out.items())},
        "dropped_ids": {k: v[:100] for k, v in sorted(left_out.items())},
        "formats": formats,
        "extras": sorted(extras),
        "reward_files": sorted(k for k in extras if k.endswith(".py")),
        "kinds": dict(sorted(kinds.items())),
        "files": files,
        "output_fingerprint": stable_hash(files),
        "timings": {"started": started, "finished": now, "seconds": round(now - started, 3)},
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def stats(run_dir: Path | str) -> dict:
    """Rows per export format (and per one-modality file) and what was left out."""
    m = StageDir(run_dir, STAGE).manifest()
    if m is None:
        return {}
    return {"formats": {f: v["rows"] for f, v in m["formats"].items()}, "left_out": m["drop_reasons"],
            "by_modality": {f: {mod: part["rows"] for mod, part in v.get("by_modality", {}).items()}
                            for f, v in m["formats"].items()},
            "reward_files": m.get("reward_files", [])}
