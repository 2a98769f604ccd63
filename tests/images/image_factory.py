"""Real Pillow-made image files for the image tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def scene(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A photo-like RGB image: smooth random blobs plus a few shapes, different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.zeros((h, w, 3))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 80)
        arr += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 255, 3)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.uniform(0, w - 40)), int(rng.uniform(0, h - 40))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([x0, y0, x0 + int(rng.uniform(10, 60)), y0 + int(rng.uniform(10, 60))], fill=color)
    return im


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but carries one tiny row of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00\x00\x00" * 4)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
