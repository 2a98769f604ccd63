"""Stage ``ingest``: read every seed source into unified sample rows.

Per record: adapter conversion (label mapping) → text checks (length, reserved tokens) → images validated
and stored once by sha256 → id → seeded sampling by source fraction → exact dedup (within and across
sources; copies with conflicting labels: ``label_conflict``) → decontamination against the eval sets →
image near-duplicate clusters (:mod:`corpus.image_near_dup`) → held-out split by cluster (e.g. the 20%
HarmImageTest images). Copies voided by a later conflicting copy are moved to dropped/ at the end.
Records are processed in units of ``part_rows`` records; each unit is one Parquet part, so a
killed run resumes at the first unfinished unit and ends with the same rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.dedup import Deduper, LabelConflicts, content_key
from corpus.guard_format import reserved_tokens_in
from corpus.image_near_dup import ImageClusters, text_key
from corpus.images import ImageRejected, NormalisedImage, image_entry, normalise_image, store_image, stored_phash
from corpus.schema import load_schema
from corpus.sources.base import Draft, Drop, Source, SourceError, adapter_class
from corpus.sources.files import ImageRoot
from corpus.store import StageWriter, part_name, stable_hash, write_json_atomic, write_parquet_atomic
from corpus.taxonomy import Taxonomy

if TYPE_CHECKING:
    from corpus.recipe import Recipe, SourceSpec

HELP = (
    "Read every seed source of the recipe (hub id or local files) into the unified sample schema: "
    "label mapping, image validation and storage by sha256, seeded sampling, exact dedup, "
    "decontamination against the eval sets and the held-out image split."
)
STAGE = "ingest"
RECORD_JSON_LIMIT = 20_000
IMAGE_BATCH = 256  # records converted, then their images normalised together (in a process pool)
POOL_MIN_IMAGES = 32  # fewer images than this are normalised in-process
log = logging.getLogger(__name__)


def unit_fraction(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the given parts (seeded sampling without state)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sample_id(source: str, prompt: str | None, response: str | None, shas: list[str]) -> str:
    return stable_hash([source, prompt, response, shas])[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def record_json(obj: Any) -> str:
    text = json.dumps(_jsonable(obj), ensure_ascii=False, default=str)
    return text if len(text) <= RECORD_JSON_LIMIT else text[:RECORD_JSON_LIMIT] + "…[cut]"


def _path_fingerprint(path: Path | None) -> Any:
    if path is None:
        return None
    if not path.exists():
        return [str(path), "missing"]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def input_fingerprint(recipe: Recipe) -> str:
    """Identify the ingest input: hub coordinates, or local file names, sizes and mtimes."""
    cfg = recipe.ingest
    specs = [s for s in cfg.sources if s.enabled] + list(cfg.decontaminate.eval_sets)
    items = []
    for s in specs:
        items.append({
            "spec": s.model_dump(),
            "path": _path_fingerprint(recipe.resolve(s.path)),
            "images_root": _path_fingerprint(recipe.resolve(s.images_root)),
        })
    items.append({"taxonomy": _path_fingerprint(recipe.resolve(cfg.taxonomy) if cfg.taxonomy else None)})
    return stable_hash(items)


@dataclass
class Outcome:
    """What happened to one draft or record inside a unit."""

    kept: list[dict] = field(default_factory=list)
    heldout: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)


class SourceReader:
    """An adapter bound to its resolved paths and image root."""

    def __init__(self, recipe: Recipe, spec: SourceSpec):
        self.spec = spec
        cls = adapter_class(spec.adapter)
        self.adapter: Source = cls(spec, cls.Options.model_validate(spec.options))
        self.path = recipe.resolve(spec.path)
        root = recipe.resolve(spec.images_root) if spec.images_root else None
        try:
            self.image_root = ImageRoot(root) if root is not None else None
        except (OSError, ValueError) as exc:
            raise SourceError(f"source {spec.name!r}: images_root: {exc}") from None
        self.adapter.images_root = root
        self.taxonomy_section = self.adapter.taxonomy_section or cls.adapter

    def records(self):
        return self.adapter.records(self.path)

    def image_bytes(self, image) -> bytes:
        if image.data is not None:
            return image.data
        if self.image_root is None:
            raise ImageRejected("image:no_root", f"image {image.ref!r} given by path but the source has no images_root")
        try:
            return self.image_root.read(image.ref)
        except SourceError as exc:
            raise SourceError(f"source {self.spec.name!r}: {exc}") from None


class Ingest:
    """Runs the ingest stage of one recipe into one run directory."""

    def __init__(self, recipe: Recipe, run_dir: Path):
        self.recipe = recipe
        self.cfg = recipe.ingest
        self.run_dir = run_dir
        self.taxonomy = Taxonomy.load(recipe.resolve(self.cfg.taxonomy) if self.cfg.taxonomy else None)
        self.deduper = Deduper()
        lc = self.cfg.label_conflict
        self.conflicts = LabelConflicts(lc.keep, lc.priority)
        #: row id -> detail of already kept copies that a later conflicting copy voids (moved at the end)
        self.revoked: dict[str, str] = {}
        nd = self.cfg.near_duplicate
        self.clusters = ImageClusters(nd.phash_max_distance) if nd.enabled else None
        self.decontam = None
        self.workers = self.cfg.workers or min(os.cpu_count() or 1, 8)
        self._pool: ProcessPoolExecutor | None = None

    # -- eval sets -------------------------------------------------------------------------------
    def build_decontam_index(self):
        from corpus.decontam import DecontamIndex

        dc = self.cfg.decontaminate
        index = DecontamIndex(ngram=dc.ngram, phash_max_distance=dc.phash_max_distance)
        if not dc.enabled:
            return index
        for spec in dc.eval_sets:
            reader = SourceReader(self.recipe, spec)
            n = 0
            skipped: Counter = Counter()
            for rec in reader.records():
                for d in self._convert(reader, rec, lambda reason, *_, c=skipped: c.update([reason])):
                    shas, phashes = [], []
                    for img in d.images:
                        try:
                            norm = normalise_image(reader.image_bytes(img), max_pixels=self.cfg.max_image_pixels,
                                                   max_bytes=self.cfg.max_image_bytes)
                        except (ImageRejected, OSError, ValueError):
                            continue
                        shas.append(norm.sha256)
                        phashes.append(norm.phash)
                    index.add(spec.name, d.prompt, d.response, shas, phashes)
                    n += 1
            log.info("eval set %s: %d rows indexed, records skipped: %s", spec.name, n, dict(skipped))
        return index

    # -- one draft -------------------------------------------------------------------------------
    def check_text(self, d: Draft) -> tuple[str | None, str | None] | Drop:
        """The draft's prompt and response after line-ending normalisation, or a Drop."""
        for name, value in (("prompt", d.prompt), ("response", d.response)):
            if value is not None and not isinstance(value, str):
                return Drop(f"invalid_field:{name}", f"{name} is a {type(value).__name__}, not text")
        prompt = d.prompt.replace("\r\n", "\n") if d.prompt is not None else None
        response = d.response.replace("\r\n", "\n") if d.response is not None else None
        for name, text in (("prompt", prompt), ("response", response)):
            if text is not None and len(text) > self.cfg.max_text_chars:
                return Drop("text_too_long", f"{name} has {len(text)} characters (> {self.cfg.max_text_chars})")
        for name, text in (("prompt", prompt), ("response", response)):
            bad = reserved_tokens_in(text)
            if bad:  # a trainer would read them as media placeholders or control tokens
                return Drop("reserved_token", f"{name} contains {bad}, reserved by the guard format or a trainer")
        if prompt is not None and not prompt.strip():
            prompt = None
        if prompt is None and not d.images:
            return Drop("empty_request", "neither prompt text nor image")
        return prompt, response

    def build_row(self, reader: SourceReader, d: Draft, prompt: str | None, response: str | None,
                  images: list[NormalisedImage]) -> dict:
        spec = reader.spec
        stored = [image_entry(norm) for norm in images]
        shas = [i["sha256"] for i in stored]
        modality = "text_image" if prompt and stored else ("image" if stored else "text")
        return {
            "id": sample_id(spec.name, prompt, response, shas),
            "source": spec.name,
            "source_split": spec.split,
            "source_id": d.source_id,
            "modality": modality,
            "prompt": prompt,
            "response": response,
            "images": stored,
            "request_label": d.request_label,
            "response_label": d.response_label,
            "refusal_label": d.refusal_label,
            "label_origin": {
                "request": "gold" if d.request_label else None,
                "response": "gold" if d.response_label else None,
            },
            "categories": self.taxonomy.map(reader.taxonomy_section, d.raw_categories),
            "raw_categories": list(d.raw_categories),
            "meta": json.dumps(_jsonable(d.meta), ensure_ascii=False, sort_keys=True),
        }

    def normalise_all(self, blobs: list[bytes]) -> list[NormalisedImage | ImageRejected]:
        """Validate and normalise images, in worker processes when there are enough of them."""
        args = [(b, self.cfg.max_image_pixels, self.cfg.max_image_bytes) for b in blobs]
        if len(args) >= POOL_MIN_IMAGES and self.workers > 1:
            if self._pool is None:
                ctx = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
            results = list(self._pool.map(_normalise, args, chunksize=8))
        else:
            results = [_normalise(a) for a in args]
        return [r if isinstance(r, NormalisedImage) else ImageRejected(*r) for r in results]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def decide(self, row: dict, phashes: list[int]) -> tuple[str, str | None, str]:
        """Where a converted row goes: ("kept"|"heldout"|"dropped", reason, detail).

        Exact copy: ``duplicate``, or ``label_conflict`` when the copies' labels disagree (see
        :class:`corpus.dedup.LabelConflicts`); then decontamination (``leak:<eval set>``); then the image
        clusters (:mod:`corpus.image_near_dup`): a near-duplicate of a held-out row is held out too, one of a
        kept row is dropped (``near_duplicate``); else the seeded held-out split.

        Only kept and held-out rows enter the dedup seen-set and the clusters: that is exactly what
        :meth:`replay_unit` rebuilds from the written parts, so a resumed run decides every later row the same way.
        """
        shas = [i["sha256"] for i in row["images"]]
        key = content_key(row["prompt"], row["response"], shas)
        labels = (row["request_label"], row["response_label"], row["refusal_label"])
        win = None
        if self.cfg.dedup and key in self.deduper:
            verdict = self.conflicts.judge(key, row["id"], row["source"], labels)
            if verdict.kind != "wins":
                self._apply(key, verdict)
                return "dropped", verdict.kind, verdict.detail
            win = verdict
        if self.decontam is not None:
            hit = self.decontam.match(row["prompt"], row["response"], shas, phashes)
            if hit is not None:
                bench, how = hit
                return "dropped", f"leak:{bench}", f"matches eval set {bench} ({how})"
        if win is not None:  # the same images as the copy it replaces: the same side of the split
            self._apply(key, win)
            return win.holder.side, None, ""
        side = None
        tkey = text_key(row["prompt"], row["response"])
        if self.clusters is not None and phashes:
            near = self.clusters.nearest(tkey, phashes)
            if near is not None and near.side == "kept":
                return "dropped", "near_duplicate", (
                    f"perceptual-hash distance {near.distance} (max {self.clusters.max_distance}) to kept row "
                    f"{near.row_id}")
            if near is not None:
                side = "heldout"  # every member of a held-out cluster is held out
        if side is None:
            side = "kept"
            ho = self.cfg.heldout
            if ho is not None and ho.fraction > 0 and row["modality"] in ho.modalities:
                if unit_fraction(self.recipe.seed, "heldout", *sorted(shas) or [row["id"]]) < ho.fraction:
                    side = "heldout"
        self._remember(row, key, labels, tkey, phashes, side)
        return side, None, ""

    def _apply(self, key: str, verdict) -> None:
        self.conflicts.apply(key, verdict)
        if verdict.revoke is not None:
            self.revoked.setdefault(*verdict.revoke)

    def _remember(self, row: dict, key: str, labels, tkey: str, phashes: list[int], side: str) -> None:
        if self.cfg.dedup:
            self.deduper.seen(key)
            self.conflicts.first(key, row["id"], row["source"], labels, side)
        if self.clusters is not None and phashes:
            self.clusters.add(tkey, phashes, side, row["id"])

    # -- units -----------------------------------------------------------------------------------
    def units(self) -> Iterator[tuple[int, SourceReader, list]]:
        unit = 0
        for spec in self.cfg.sources:
            if not spec.enabled:
                continue
            reader = SourceReader(self.recipe, spec)
            chunk: list = []
            n = 0
            for rec in reader.records():
                if spec.limit is not None and n >= spec.limit:
                    break
                n += 1
                chunk.append(rec)
                if len(chunk) >= self.cfg.part_rows:
                    yield unit, reader, chunk
                    unit += 1
                    chunk = []
            if chunk:
                yield unit, reader, chunk
                unit += 1

    def process(self, reader: SourceReader, records: list) -> tuple[Outcome, Counter]:
        spec = reader.spec
        out = Outcome()
        counts: Counter = Counter(rows_in=len(records))

        def drop(reason: str, detail: str, record: Any, source_id: str | None, row_id: str | None = None):
            out.dropped.append({
                "drop_reason": reason, "detail": detail, "id": row_id, "source": spec.name,
                "source_split": spec.split, "source_id": source_id, "record": record_json(record),
            })

        for start in range(0, len(records), IMAGE_BATCH):
            pending: list[tuple[Draft, str | None, str | None, list[int]]] = []
            blobs: list[bytes] = []
            for rec in records[start:start + IMAGE_BATCH]:
                for d in self._convert(reader, rec, drop):
                    if spec.fraction < 1.0 and unit_fraction(self.recipe.seed, spec.name, d.source_id) >= spec.fraction:
                        drop("sampled_out", f"outside the {spec.fraction:.0%} sample", _draft_view(d), d.source_id)
                        continue
                    text = self.check_text(d)
                    if isinstance(text, Drop):
                        drop(text.reason, text.detail, _draft_view(d), d.source_id)
                        continue
                    try:
                        data = [reader.image_bytes(img) for img in d.images]
                    except ImageRejected as exc:
                        drop(exc.reason, exc.detail, _draft_view(d), d.source_id)
                        continue
                    pending.append((d, *text, list(range(len(blobs), len(blobs) + len(data)))))
                    blobs.extend(data)
            normalised = self.normalise_all(blobs)
            for d, prompt, response, slots in pending:
                bad = next((normalised[i] for i in slots if isinstance(normalised[i], ImageRejected)), None)
                if bad is not None:
                    refs = [img.ref or "inline image" for img in d.images]
                    drop(bad.reason, f"{', '.join(refs)}: {bad.detail}", _draft_view(d), d.source_id)
                    continue
                images = [normalised[i] for i in slots]
                row = self.build_row(reader, d, prompt, response, images)
                where, reason, detail = self.decide(row, [norm.phash for norm in images])
                if where == "dropped":
                    drop(reason, detail, row, row["source_id"], row["id"])
                    continue
                for norm in images:  # only rows that are kept or held out put their images in the run
                    store_image(norm, self.run_dir)
                (out.kept if where == "kept" else out.heldout).append(row)
        counts["kept"] = len(out.kept)
        counts["heldout"] = len(out.heldout)
        return out, counts

    @staticmethod
    def _convert(reader: SourceReader, rec, drop) -> list[Draft]:
        """The record's drafts; an unreadable record or an adapter Drop is recorded and gives none."""
        if rec.fields is None:
            drop(rec.drop.reason, rec.drop.detail, None, str(rec.index))
            return []
        try:
            converted = reader.adapter.convert(rec.fields, rec.index)
        except SourceError:
            raise
        except Exception as exc:  # one bad record never kills the run
            drop(f"adapter_error:{type(exc).__name__}", f"record {rec.index}: {exc}", rec.fields, str(rec.index))
            return []
        if isinstance(converted, Drop):
            drop(converted.reason, converted.detail, rec.fields, str(rec.index))
            return []
        return converted

    def replay_unit(self, writer: StageWriter, unit: int) -> None:
        """Rebuild dedup, label-conflict and image-cluster state from a finished unit's parts (resume)."""
        sides = [(writer.path, "kept")] + ([(writer.path / self.cfg.heldout.name, "heldout")] if self.cfg.heldout
                                           else [])
        cols = ["id", "source", "prompt", "response", "images", "request_label", "response_label", "refusal_label"]
        for d, side in sides:
            path = d / part_name(unit)
            if not path.exists():
                continue
            for r in pq.read_table(path, columns=cols).to_pylist():
                key = content_key(r["prompt"], r["response"], [i["sha256"] for i in r["images"]])
                labels = (r["request_label"], r["response_label"], r["refusal_label"])
                phashes = ([stored_phash(self.run_dir / i["path"]) for i in r["images"]]
                           if self.clusters is not None else [])
                self._remember(r, key, labels, text_key(r["prompt"], r["response"]), phashes, side)
        state = _conflict_file(writer, unit)
        if state.exists():
            data = json.loads(state.read_text(encoding="utf-8"))
            self.conflicts.replay(data["events"])
            for key, _ in data["events"]:  # seen even when its kept copy was already moved out
                self.deduper.seen(key)
            for row_id, detail in data["revoked"]:
                self.revoked.setdefault(row_id, detail)

    def save_conflicts(self, writer: StageWriter, unit: int, revoked_before: int) -> None:
        """Write the unit's label-conflict events (before the unit is committed), or remove a stale file."""
        events = self.conflicts.events()
        revoked = list(self.revoked.items())[revoked_before:]
        path = _conflict_file(writer, unit)
        if events or revoked:
            path.parent.mkdir(exist_ok=True)
            write_json_atomic(path, {"events": events, "revoked": revoked})
        elif path.exists():
            path.unlink()

    def drop_revoked(self, writer: StageWriter) -> int:
        """Move the kept and held-out copies voided by a later conflicting copy into dropped/ (``label_conflict``).

        Idempotent (a run killed in the middle redoes it): a part's dropped rows are written first, then its
        kept rows without them. Images no remaining row uses are removed from the run.
        """
        if not self.revoked:
            return 0
        moved = 0
        freed: set[str] = set()
        sides = [writer.path] + ([writer.path / self.cfg.heldout.name] if self.cfg.heldout else [])
        for d in sides:
            for part in sorted(d.glob("part-*.parquet")):
                table = pq.read_table(part)
                ids = table.column("id").to_pylist()
                gone = [i for i, row_id in enumerate(ids) if row_id in self.revoked]
                if not gone:
                    continue
                rows = table.to_pylist()
                drop_path = writer.path / "dropped" / part.name
                old = pq.read_table(drop_path).to_pylist() if drop_path.exists() else []
                have = {(r["id"], r["drop_reason"]) for r in old}
                new = [{"drop_reason": "label_conflict", "detail": self.revoked[rows[i]["id"]], "id": rows[i]["id"],
                        "source": rows[i]["source"], "source_split": rows[i]["source_split"],
                        "source_id": rows[i]["source_id"], "record": record_json(rows[i])}
                       for i in gone if (rows[i]["id"], "label_conflict") not in have]
                if new:
                    write_parquet_atomic(writer.dropped_schema.conform(pa.Table.from_pylist(old + new),
                                                                       f"{STAGE}/{part.name} (dropped)"), drop_path)
                keep = [r for i, r in enumerate(rows) if i not in set(gone)]
                write_parquet_atomic(writer.schema.conform(pa.Table.from_pylist(keep, schema=table.schema),
                                                           f"{STAGE}/{part.name}"), part)
                freed.update(img["path"] for i in gone for img in rows[i]["images"])
                moved += len(gone)
                counters = writer.path / "_units" / f"{int(part.stem.split('-')[1]):05d}.json"
                if counters.exists():  # a unit is one source: its kept / held-out counts are the part's rows
                    c = json.loads(counters.read_text(encoding="utf-8"))
                    c[f"{'kept' if d == writer.path else 'heldout'}:{rows[0]['source']}"] = len(keep)
                    write_json_atomic(counters, c)
        used = {img["path"] for d in sides for part in d.glob("part-*.parquet")
                for imgs in pq.read_table(part, columns=["images"]).column("images").to_pylist() for img in imgs}
        for rel in freed - used:
            (self.run_dir / rel).unlink(missing_ok=True)
        return moved


def _conflict_file(writer: StageWriter, unit: int) -> Path:
    return writer.path / "_conflicts" / f"{unit:05d}.json"


def _normalise(args: tuple[bytes, int, int]) -> NormalisedImage | tuple[str, str]:
    """Worker: normalise one image; a rejection comes back as (reason, detail)."""
    data, max_pixels, max_bytes = args
    try:
        return normalise_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    except ImageRejected as exc:
        return exc.reason, exc.detail


def _draft_view(d: Draft) -> dict:
    return {
        "source_id": d.source_id, "prompt": d.prompt, "response": d.response,
        "images": [i.ref or f"<{len(i.data or b'')} bytes>" for i in d.images],
        "request_label": d.request_label, "response_label": d.response_label,
    }


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    cfg = recipe.ingest
    if not [s for s in cfg.sources if s.enabled]:
        raise SourceError("the recipe lists no enabled source under ingest.sources")
    schema = load_schema("sample")
    config = {"ingest": cfg.model_dump(exclude={"workers"}), "seed": recipe.seed, "schema_version": schema.version}
    writer = StageWriter(run_dir, STAGE, schema, config, input_fingerprint(recipe), force=force)
    if writer.skipped:
        log.info("ingest: up to date, skipped")
        return writer.manifest()
    t0 = time.time()
    ing = Ingest(recipe, run_dir)
    index = ing.build_decontam_index()
    ing.decontam = index if len(index) else None
    t_index = time.time() - t0
    heldout_name = cfg.heldout.name if cfg.heldout else None
    try:
        _write_units(ing, writer, schema, heldout_name)
        ing.drop_revoked(writer)
    finally:
        ing.close()
    warnings = check_source_rows(cfg.sources, writer)
    return writer.finish({
        "warnings": warnings,
        "decontamination": {"index_seconds": round(t_index, 3), "eval_sets": index.index_stats()},
        "images_dir": "images",
        "heldout_output": heldout_name,
        "unmapped_raw_categories_this_attempt": ing.taxonomy.unmapped(),
    })


def check_source_rows(sources: list[SourceSpec], writer: StageWriter) -> list[str]:
    """Warn about every enabled source that gave no row; raise SourceError below a source's ``min_rows``.

    A source's rows are its kept plus held-out rows (what it contributes to the corpus).
    """
    counts: Counter = Counter()
    for unit_counts in writer.unit_counters().values():  # the counters only, not the unit's file records
        counts.update(unit_counts)
    warnings, errors = [], []
    for spec in sources:
        if not spec.enabled:
            continue
        read = counts[f"rows_in:{spec.name}"]
        got = counts[f"kept:{spec.name}"] + counts[f"heldout:{spec.name}"]
        where = spec.hub or spec.path
        if got == 0:
            what = f"read no record from {where}" if read == 0 else f"kept none of its {read} records (all dropped)"
            warnings.append(f"source {spec.name!r} gave 0 rows: it {what}")
            log.warning("ingest: %s", warnings[-1])
        if spec.min_rows is not None and got < spec.min_rows:
            errors.append(f"source {spec.name!r} gave {got} rows ({read} records read from {where}), fewer than its "
                          f"min_rows {spec.min_rows}")
    if errors:
        raise SourceError("; ".join(errors))
    return warnings


def _write_units(ing: Ingest, writer: StageWriter, schema, heldout_name: str | None) -> None:
    done = writer.done_units()
    empty = schema.empty()
    for unit, reader, records in ing.units():
        if unit in done:
            ing.replay_unit(writer, unit)
            continue
        revoked_before = len(ing.revoked)
        out, counts = ing.process(reader, records)
        ing.save_conflicts(writer, unit, revoked_before)
        kept = pa.Table.from_pylist(out.kept, schema=schema.arrow) if out.kept else empty
        dropped = pa.Table.from_pylist(out.dropped) if out.dropped else None
        outputs = {}
        if heldout_name and out.heldout:
            outputs[heldout_name] = pa.Table.from_pylist(out.heldout, schema=schema.arrow)
        name = reader.spec.name
        writer.write_unit(unit, kept, dropped, outputs, counters={
            "rows_in": counts["rows_in"], f"rows_in:{name}": counts["rows_in"],
            f"kept:{name}": counts["kept"], f"heldout:{name}": counts["heldout"],
        })
        log.info("ingest: unit %d (%s): %d kept, %d held out, %d dropped", unit, reader.spec.name,
                 len(out.kept), len(out.heldout), len(out.dropped))
