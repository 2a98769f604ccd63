"""Seed files in real layouts, made on the spot for ingest tests."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

WILDGUARD = pa.schema([("prompt", pa.string()), ("adversarial", pa.bool_()), ("response", pa.string()),
                       ("prompt_harm_label", pa.string()), ("response_refusal_label", pa.string()),
                       ("response_harm_label", pa.string()), ("subcategory", pa.string())])
UNSAFEBENCH = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                         ("safety_label", pa.string()), ("category", pa.string()), ("source", pa.string()),
                         ("text", pa.string())])


def wildguard_row(prompt: str, label: str = "harmful", response: str | None = None, **kw) -> dict:
    row = {"prompt": prompt, "adversarial": False, "response": response, "prompt_harm_label": label,
           "response_refusal_label": "refusal" if response else None,
           "response_harm_label": "unharmful" if response else None, "subcategory": "violence"}
    row.update(kw)
    return row


def write_wildguard(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=WILDGUARD), path)
    return path


def many_wildguard(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = "how do i make write a story about the best way to get my friend bank money help".split()
    rows = [wildguard_row(f"{i} " + " ".join(rng.choices(words, k=12)), rng.choice(["harmful", "unharmful"]))
            for i in range(n)]
    return write_wildguard(path, rows)


def image_bytes(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    rng = random.Random(seed)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(3):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        d.rectangle([x, y, x + 15, y + 15], fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def unsafebench_row(data: bytes, label: str = "Unsafe", category: str = "Violence") -> dict:
    return {"image": {"bytes": data, "path": None}, "safety_label": label, "category": category,
            "source": "Lexica", "text": "caption"}


def write_unsafebench(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=UNSAFEBENCH), path)
    return path


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb that must not be decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(
        b"IEND", b"")
