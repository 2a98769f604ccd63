"""Read a source's raw records, streaming, from the hub or a local file, folder or zip archive.

:func:`iter_records` is the one entry point. Local formats: parquet (row batches), json (an array,
streamed element by element, or an object of arrays keyed by split), jsonl (line by line), csv
(stdlib csv, values stay strings), any of these gzipped (``.gz``) or inside a zip (``member``), and
image folders in the Hugging Face imagefolder layout (class subfolders, or ``metadata.jsonl`` /
``metadata.csv`` with a ``file_name`` column), as a folder or a zip.

Record index = position of the record in the file (0-based; blank lines are not records). A record
that cannot be decoded becomes ``Record(index, None, Drop(...))`` (``invalid_utf8``, ``invalid_json``,
``invalid_csv``) and reading goes on. A required column absent from the file raises
:class:`SourceError` naming the source, the file, the column and the columns present.

A file that cannot be read at all (a truncated gzip, a damaged zip or Parquet file, a Git LFS pointer
checked out instead of the data, an I/O error) raises :class:`SourceError` naming the source, the file
and the cause (:func:`read_error`), never a bare ``EOFError``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import os
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from corpus.sources.base import Drop, ImageInput, Record, SourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
PEEK = 50  # json/jsonl: the required columns are checked against the keys of this many first records
_BATCH = 128
_CHUNK = 1 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # real prompts exceed csv's 128 KiB default


def resolve_path(location: str, base_dir: Path | None = None) -> Path:
    """Resolve a recipe path exactly as :meth:`corpus.recipe.Recipe.resolve` does."""
    from corpus.recipe import Recipe

    resolved = Recipe.model_construct(name="", base_dir=base_dir).resolve(location)
    assert resolved is not None
    return resolved


def iter_records(
    spec: Any, required_columns: Iterable[str] = (), path: Path | None = None, base_dir: Path | None = None
) -> Iterator[Record]:
    """Yield the records of ``spec`` (a SourceSpec), at most ``spec.limit`` of them.

    ``path`` is the already resolved local location; without it ``spec.path`` is resolved against
    ``base_dir`` (the recipe's folder) like the recipe does.
    """
    required = tuple(required_columns)
    if getattr(spec, "hub", None):
        gen = _iter_hub(spec, required)
        where = f"hub dataset {spec.hub!r}"
    else:
        if path is None:
            if not spec.path:
                raise SourceError(f"source {spec.name!r}: neither `hub` nor `path` is set")
            path = resolve_path(spec.path, base_dir)
        gen = _iter_local(spec, Path(path), required)
        member = getattr(spec, "member", None)
        where = f"{path}:{member}" if member else str(path)
    limit = getattr(spec, "limit", None)
    try:
        n = 0
        while limit is None or n < limit:
            try:
                rec = next(gen)
            except StopIteration:
                break
            except SourceError:
                raise
            except Exception as exc:  # the file itself is unreadable: one clear error, not a bare EOFError
                raise read_error(spec, where, exc) from exc
            yield rec
            n += 1
    finally:
        gen.close()


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def is_lfs_pointer(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) is a Git LFS pointer instead of the file's content."""
    return head.lstrip().startswith(LFS_POINTER)


def read_error(spec: Any, where: str, exc: BaseException) -> SourceError:
    """A SourceError naming the source, the file and the cause of a read failure."""
    return SourceError(f"source {getattr(spec, 'name', '?')!r}: cannot read {where}: {read_error_cause(where, exc)}")


def read_error_cause(where: str, exc: BaseException) -> str:
    """A plain-words cause of a read failure (truncated gzip, damaged zip, ...), with the original message."""
    msg = f"{type(exc).__name__}: {exc}"
    gz = ".gz" in where.lower()
    if isinstance(exc, EOFError):
        what = "truncated gzip" if gz else "truncated file"
        return f"{what} (the data ends before its end-of-stream marker; was the download cut short?) [{msg}]"
    if isinstance(exc, gzip.BadGzipFile):
        return f"not a gzip file although its name ends in .gz [{msg}]"
    if isinstance(exc, zlib.error):
        return f"corrupt compressed data [{msg}]"
    if isinstance(exc, zipfile.BadZipFile):
        return f"damaged zip archive [{msg}]"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text [{msg}]"
    if isinstance(exc, OSError):
        return f"I/O error or damaged file [{msg}]"
    return msg


def as_image_input(value: Any) -> ImageInput | None:
    """An image value as seeds store it (bytes, relative path, ``{"bytes", "path"}`` dict) as ImageInput."""
    if value is None or isinstance(value, ImageInput):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ImageInput(data=bytes(value))
    if isinstance(value, str):
        return ImageInput(ref=value) if value else None
    if isinstance(value, dict):
        # Bytes present (zero bytes included) are the image: b"" is image:empty, never a lookup of ``path``
        # (HF keeps the original file name there, and a file of that name under images_root is another image).
        if value.get("bytes") is not None:
            return ImageInput(data=bytes(value["bytes"]))
        if value.get("path"):
            return ImageInput(ref=str(value["path"]))
        return None
    raise TypeError(f"cannot read an image from a {type(value).__name__} value")


# ----------------------------------------------------------------------------------------- hub


def _iter_hub(spec: Any, required: tuple[str, ...]) -> Iterator[Record]:
    where = f"hub dataset {spec.hub!r} (config {spec.config!r}, split {spec.split!r})"
    try:
        import datasets

        ds = datasets.load_dataset(spec.hub, spec.config, split=spec.split, streaming=True)
    except Exception as exc:  # network, gating, unknown config: all fail the source with the cause
        raise SourceError(f"source {spec.name!r}: cannot load {where}: {type(exc).__name__}: {exc}") from None
    features = getattr(ds, "features", None)
    image_cols: list[str] = []
    if features:
        for col, feat in features.items():
            undecoded = _undecoded(feat, datasets)
            if undecoded is not None:  # keep the encoded bytes; ingest normalises them
                ds = ds.cast_column(col, undecoded)
                image_cols.append(col)
        _check_columns(spec, where, list(features), required)
    for i, row in enumerate(ds):
        if i == 0 and not features:
            _check_columns(spec, where, list(row), required)
        row = dict(row)
        for col in image_cols:
            row[col] = _with_bytes(row[col])
        yield Record(i, row)


def _undecoded(feat: Any, datasets: Any) -> Any:
    """The same feature with images left encoded (``Image(decode=False)``), or None if it holds no image."""
    if isinstance(feat, datasets.Image):
        return datasets.Image(decode=False)
    inner = getattr(feat, "feature", None)
    if isinstance(feat, (datasets.Sequence, getattr(datasets, "List", datasets.Sequence))) and isinstance(
            inner, datasets.Image):
        return type(feat)(datasets.Image(decode=False))
    if isinstance(feat, list) and len(feat) == 1 and isinstance(feat[0], datasets.Image):
        return [datasets.Image(decode=False)]
    return None


def _with_bytes(value: Any) -> Any:
    """Undecoded hub images stored as files (imagefolder repos) carry only a (remote) path: read its bytes
    through the datasets file system so the image does not depend on a local path."""
    if isinstance(value, list):
        return [_with_bytes(v) for v in value]
    if isinstance(value, dict) and value.get("bytes") is None and value.get("path"):
        from datasets.utils.file_utils import xopen

        try:
            with xopen(value["path"], "rb") as f:
                return {"bytes": f.read(), "path": value["path"]}
        except Exception:  # left as a path: ingest records image:bad_path or image:missing
            return value
    return value


# --------------------------------------------------------------------------------------- local


def detect_format(path: Path, member: str | None = None, fmt: str = "auto") -> str:
    """The concrete format of a local source: parquet, json, jsonl, csv or imagefolder."""
    if fmt not in ("auto", "zip"):
        return fmt
    if path.is_dir():
        return "imagefolder"
    if member:
        return detect_format(Path(member))
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffixes, kind in (
        ((".parquet", ".pq"), "parquet"),
        ((".jsonl", ".ndjson"), "jsonl"),
        ((".json",), "json"),
        ((".csv", ".tsv"), "csv"),
    ):
        if name.endswith(suffixes):
            return kind
    if name.endswith(".zip") or fmt == "zip":
        return "imagefolder"  # a zip without `member`: an image folder inside the archive
    raise SourceError(f"cannot tell the format of {path} from its name; set `format` in the recipe")


def _iter_local(spec: Any, path: Path, required: tuple[str, ...]) -> Iterator[Record]:
    if not path.exists():
        raise SourceError(f"source {spec.name!r}: file not found: {path}")
    member = getattr(spec, "member", None)
    fmt = detect_format(path, member, getattr(spec, "format", "auto"))
    if path.is_file():
        _check_not_pointer(spec, path, fmt)
    is_zip = path.is_file() and zipfile.is_zipfile(path)
    if member and not is_zip:
        raise SourceError(f"source {spec.name!r}: cannot read {path}: `member` is set but the file is not a "
                          "readable zip archive (damaged, truncated or not a zip)")
    if path.is_file() and not is_zip and path.name.lower().endswith(".zip"):
        raise SourceError(f"source {spec.name!r}: cannot read {path}: damaged zip archive (truncated, or not a zip)")
    if fmt == "imagefolder":
        yield from _iter_imagefolder(spec, path, required, is_zip)
        return
    if is_zip and not member:
        raise SourceError(f"source {spec.name!r}: {path} is a zip archive; set `member` to the file inside it")
    desc = f"{path}:{member}" if is_zip else str(path)
    name = member if is_zip else path.name
    with _open(path, member if is_zip else None) as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if name.lower().endswith(".gz") else raw
        if fmt == "parquet":
            yield from _parquet(spec, stream, desc, required)
        elif fmt == "jsonl":
            yield from _checked(spec, _jsonl(stream, desc), desc, required)
        elif fmt == "json":
            yield from _checked(spec, _json(spec, stream, desc), desc, required)
        elif fmt == "csv":
            delim = "\t" if name.lower().removesuffix(".gz").endswith(".tsv") else ","
            yield from _csv(spec, stream, desc, required, delim)
        else:
            raise SourceError(f"source {spec.name!r}: unsupported format {fmt!r}")


def _check_not_pointer(spec: Any, path: Path, fmt: str) -> None:
    """SourceError if ``path`` is a Git LFS pointer file (the repository was cloned without ``git lfs pull``)."""
    with open(path, "rb") as f:
        head = f.read(256)
    if is_lfs_pointer(head):
        kind = {"parquet": "a Parquet", "json": "a JSON", "jsonl": "a JSON Lines", "csv": "a CSV"}.get(fmt, "a data")
        raise SourceError(f"source {spec.name!r}: cannot read {path}: not {kind} file — it is a Git LFS pointer "
                          "(the repository was cloned without its LFS data: run `git lfs pull`)")


@contextlib.contextmanager
def _open(path: Path, member: str | None) -> Iterator[IO[bytes]]:
    if member is None:
        with open(path, "rb") as f:
            yield f
        return
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise SourceError(f"{member!r} is not in the zip archive {path}") from None
        with zf.open(info) as f:
            yield f


def _check_columns(spec: Any, where: str, present: Iterable[str], required: Iterable[str]) -> None:
    have = list(present)
    missing = [c for c in required if c not in have]
    if missing:
        raise SourceError(
            f"source {spec.name!r} ({getattr(spec, 'adapter', '?')}): {where} lacks required column(s) "
            f"{missing}; columns present: {have}"
        )


def _checked(spec: Any, records: Iterator[Record], desc: str, required: tuple[str, ...]) -> Iterator[Record]:
    """Check the required columns against the keys of the first records, then yield everything."""
    head: list[Record] = []
    keys: dict[str, None] = {}
    n_ok = 0
    for rec in records:
        head.append(rec)
        if rec.fields is not None:
            keys.update(dict.fromkeys(rec.fields))
            n_ok += 1
            if n_ok >= PEEK:
                break
    if n_ok:
        _check_columns(spec, desc, keys, required)
    yield from head
    yield from records


def _parquet(spec: Any, stream: IO[bytes], desc: str, required: tuple[str, ...]) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(stream)
    except Exception as exc:
        hint = ""
        with contextlib.suppress(Exception):
            stream.seek(0)
            if is_lfs_pointer(stream.read(256)):
                hint = " — is this a Git LFS pointer? (run `git lfs pull`)"
        raise SourceError(f"source {spec.name!r}: cannot read {desc}: not a readable Parquet file{hint} "
                          f"[{type(exc).__name__}: {exc}]") from None
    _check_columns(spec, desc, pf.schema_arrow.names, required)
    idx = 0
    for batch in pf.iter_batches(batch_size=_BATCH):
        for row in batch.to_pylist():
            yield Record(idx, row)
            idx += 1


def _has_bad_text(value: Any) -> bool:
    """True if a decoded value holds lone surrogates (bytes that were not UTF-8)."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_bad_text(k) or _has_bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bad_text(v) for v in value)
    return False


def _jsonl(stream: IO[bytes], desc: str) -> Iterator[Record]:
    idx = 0
    for lineno, raw in enumerate(stream, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield Record(idx, None, Drop("invalid_utf8", f"{desc} line {lineno}: {exc}"))
            idx += 1
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Record(idx, None, Drop("invalid_json", f"{desc} line {lineno}: {exc}"))
            idx += 1
            continue
        if not isinstance(obj, dict):
            yield Record(idx, None, Drop("invalid_json", f"{desc} line {lineno}: not a JSON object"))
        elif _has_bad_text(obj):
            yield Record(idx, None, Drop("invalid_utf8", f"{desc} line {lineno}: lone surrogate escape"))
        else:
            yield Record(idx, obj)
        idx += 1


def _item_record(idx: int, obj: Any, desc: str) -> Record:
    if not isinstance(obj, dict):
        return Record(idx, None, Drop("invalid_json", f"{desc} item {idx}: not a JSON object"))
    if _has_bad_text(obj):
        return Record(idx, None, Drop("invalid_utf8", f"{desc} item {idx}: text is not valid UTF-8"))
    return Record(idx, obj)


def _json(spec: Any, stream: IO[bytes], desc: str) -> Iterator[Record]:
    """A JSON array (streamed) or an object of arrays (read whole; the array under ``spec.split``)."""
    reader = _TextChunks(stream)
    first = reader.peek_char()
    if first == "[":
        for idx, obj in enumerate(_array_items(reader, spec, desc)):
            yield _item_record(idx, obj, desc)
        return
    if first != "{":
        raise SourceError(f"source {spec.name!r}: {desc} is neither a JSON array nor an object")
    try:
        data = json.loads(reader.read_all())
    except json.JSONDecodeError as exc:
        raise SourceError(f"source {spec.name!r}: {desc} is not valid JSON: {exc}") from None
    lists = {k: v for k, v in data.items() if isinstance(v, list)}
    if isinstance(data.get(spec.split), list):
        items = data[spec.split]
    elif len(lists) == 1:
        items = next(iter(lists.values()))
    else:
        raise SourceError(
            f"source {spec.name!r}: {desc} is a JSON object without an array under split {spec.split!r}; "
            f"arrays under: {sorted(lists)}"
        )
    for idx, obj in enumerate(items):
        yield _item_record(idx, obj, desc)


class _TextChunks:
    """Incrementally decoded text of a byte stream (undecodable bytes kept as lone surrogates)."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.dec = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.started = False

    def more(self, at_least: int = _CHUNK) -> bool:
        if self.eof:
            return False
        if self.pos > _CHUNK:
            self.buf, self.pos = self.buf[self.pos:], 0
        data = self.stream.read(max(at_least, _CHUNK))
        self.eof = not data
        text = self.dec.decode(data, final=self.eof)
        if not self.started:
            text, self.started = text.lstrip("\ufeff"), True
        self.buf += text
        return not self.eof or bool(text)

    def skip_ws(self) -> str:
        """Skip whitespace; the next character ('' at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def peek_char(self) -> str:
        return self.skip_ws()

    def read_all(self) -> str:
        while self.more():
            pass
        return self.buf[self.pos:]


def _array_items(r: _TextChunks, spec: Any, desc: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()

    def fail(msg: str) -> SourceError:
        return SourceError(f"source {spec.name!r}: {desc} is not a valid JSON array: {msg}")

    r.pos += 1  # '['
    if r.skip_ws() == "]":
        return
    while True:
        if r.skip_ws() == "":
            raise fail("ends inside the array")
        while True:
            try:
                obj, end = decoder.raw_decode(r.buf, r.pos)
                if end < len(r.buf) or r.eof:
                    break
            except json.JSONDecodeError as exc:
                if r.eof:
                    raise fail(str(exc)) from None
            r.more(len(r.buf) - r.pos)  # grow geometrically for large items
        r.pos = end
        yield obj
        sep = r.skip_ws()
        if sep == ",":
            r.pos += 1
        elif sep == "]":
            return
        else:
            raise fail(f"expected ',' or ']' after item, got {sep!r}")


def _csv(spec: Any, stream: IO[bytes], desc: str, required: tuple[str, ...], delimiter: str) -> Iterator[Record]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return
        if any(_SURROGATE.search(h) for h in header):
            raise SourceError(f"source {spec.name!r}: the header of {desc} is not valid UTF-8")
        _check_columns(spec, desc, header, required)
        idx = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield Record(idx, None, Drop("invalid_csv", f"{desc} line {reader.line_num}: {exc}"))
                idx += 1
                continue
            if not row:
                continue
            if any(_SURROGATE.search(v) for v in row):
                yield Record(idx, None, Drop("invalid_utf8", f"{desc} line {reader.line_num}: bytes not UTF-8"))
            elif len(row) != len(header):
                detail = f"{desc} line {reader.line_num}: {len(row)} fields, header has {len(header)}"
                yield Record(idx, None, Drop("invalid_csv", detail))
            else:
                yield Record(idx, dict(zip(header, row)))
            idx += 1
    finally:
        text.detach()


# --------------------------------------------------------------------------------- imagefolder


def _iter_imagefolder(spec: Any, path: Path, required: tuple[str, ...], is_zip: bool) -> Iterator[Record]:
    """Image folder layout; ``image`` is ``ImageInput(ref=...)`` relative to ``path`` (the image root)."""
    with contextlib.ExitStack() as stack:
        if is_zip:
            zf = stack.enter_context(zipfile.ZipFile(path))
            names = sorted(n for n in zf.namelist() if not n.endswith("/"))

            def opener(name: str) -> IO[bytes]:
                return zf.open(name)
        else:
            names = _walk(path)

            def opener(name: str) -> IO[bytes]:
                return open(path / name, "rb")

        yield from _imagefolder_records(spec, str(path), names, opener, required)


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        for f in filenames:
            out.append(f if rel == "." else f"{rel}/{f}")
    return sorted(out)


def _imagefolder_records(
    spec: Any, where: str, names: list[str], opener: Callable[[str], IO[bytes]], required: tuple[str, ...]
) -> Iterator[Record]:
    base = ""
    top_meta = {"metadata.jsonl", "metadata.csv"} & set(names)
    split_prefix = f"{spec.split}/"
    if not top_meta and any(n.startswith(split_prefix) for n in names):
        base = split_prefix
    meta = next((base + m for m in ("metadata.jsonl", "metadata.csv") if base + m in names), None)
    if meta is not None:
        desc = f"{where}:{meta}"
        with opener(meta) as f:
            if meta.endswith(".jsonl"):
                rows = _checked(spec, _jsonl(f, desc), desc, ("file_name",))
            else:
                rows = _csv(spec, f, desc, ("file_name",), ",")
            checked = False
            for rec in rows:
                if rec.fields is not None:
                    if not checked:
                        _check_columns(spec, desc, [*rec.fields, "image"], required)
                        checked = True
                    fname = rec.fields.get("file_name")
                    if not isinstance(fname, str) or not fname:
                        rec = Record(rec.index, None, Drop("missing_field:file_name", f"{desc} record {rec.index}"))
                    else:
                        rec.fields["image"] = ImageInput(ref=base + fname.replace("\\", "/"))
                yield rec
        return
    _check_columns(spec, where, ["image", "label", "file_name"], required)
    idx = 0
    for name in names:
        if not name.startswith(base) or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        rel = name[len(base):]
        parts = PurePosixPath(rel).parts
        label = parts[0] if len(parts) > 1 else None
        yield Record(idx, {"image": ImageInput(ref=name), "label": label, "file_name": rel})
        idx += 1
