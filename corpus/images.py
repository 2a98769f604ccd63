"""Images: validate, normalise, hash, store once by sha256, and merge.

Policy of :func:`normalise_image`:

- rejected (``ImageRejected``): empty input (``image:empty``), more bytes than ``max_bytes``
  (``image:too_many_bytes``), not an image or undecodable (``image:corrupt``), cut short (``image:truncated``),
  more pixels than ``max_pixels`` by its header, checked before any pixel is decoded (``image:too_large``),
  a pixel mode we cannot map to 8-bit (``image:unsupported_mode``);
- changed, then re-encoded losslessly as PNG: animated (first frame kept), EXIF orientation other than 1
  (applied), CMYK/YCbCr/LAB/HSV (to RGB), 16/32-bit and float (to 8-bit, scaled), palette with transparency
  (to RGBA), formats outside JPEG/PNG/WEBP/GIF (e.g. BMP, TIFF);
- otherwise the original bytes and format are kept. ``sha256`` is always of the stored bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

KEEP_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
_PLAIN_MODES = {"1", "L", "LA", "RGB", "RGBA", "P"}
_TO_RGB_MODES = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
_ORIENTATION_TAG = 0x0112


class ImageRejected(ValueError):
    """An input image that cannot be used; ``reason`` is a drop reason like ``image:corrupt``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NormalisedImage:
    """A validated image ready to store. ``notes`` lists what normalisation changed (empty if nothing)."""

    data: bytes
    sha256: str
    width: int
    height: int
    format: str
    phash: int
    notes: tuple[str, ...] = field(default=())


def _truncated_webp(data: bytes) -> bool:
    """A RIFF/WEBP file whose declared size is larger than the bytes present."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    return int.from_bytes(data[4:8], "little") + 8 > len(data)


def _decode_error(exc: Exception, data: bytes) -> ImageRejected:
    msg = f"{type(exc).__name__}: {exc}"
    if "truncated" in str(exc).lower() or _truncated_webp(data):
        return ImageRejected("image:truncated", msg)
    return ImageRejected("image:corrupt", msg)


def _to_8bit(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Map any decodable mode to an 8-bit mode; returns (image, note or None when unchanged)."""
    mode = im.mode
    if mode in _PLAIN_MODES:
        if mode == "P" and "transparency" in im.info:
            return im.convert("RGBA"), "mode:P+transparency->RGBA"
        return im, None
    if mode in _TO_RGB_MODES:
        return im.convert("RGB"), f"mode:{mode}->RGB"
    if mode in ("PA", "RGBa"):
        return im.convert("RGBA"), f"mode:{mode}->RGBA"
    if mode == "La":
        return im.convert("LA"), "mode:La->LA"
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535):
            out = arr / 257.0
        elif mode == "F" and arr.size and arr.min() >= 0 and arr.max() <= 1:
            out = arr * 255.0
        else:  # unknown range: stretch min..max
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
            out = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L"), f"mode:{mode}->L"
    raise ImageRejected("image:unsupported_mode", f"mode {mode}")


def _encode_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def normalise_image(data: bytes, *, max_pixels: int, max_bytes: int) -> NormalisedImage:
    """Validate ``data`` and return the bytes to store (see the module docstring for the policy)."""
    if not data:
        raise ImageRejected("image:empty", "0 bytes")
    if len(data) > max_bytes:
        raise ImageRejected("image:too_many_bytes", f"{len(data)} bytes > max_bytes {max_bytes}")
    with warnings.catch_warnings():
        # Our own max_pixels check below is authoritative; PIL's global limit is left untouched.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError as exc:
            raise ImageRejected("image:too_large", str(exc)) from None
        except UnidentifiedImageError:
            raise ImageRejected("image:corrupt", "not a recognised image format") from None
        except Exception as exc:  # any parser failure is a bad input, not a crash
            raise _decode_error(exc, data) from None
        fmt = im.format or "UNKNOWN"
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageRejected("image:corrupt", f"size {width}x{height}")
        if width * height > max_pixels:
            raise ImageRejected("image:too_large", f"{width}x{height} = {width * height} pixels > {max_pixels}")
        notes: list[str] = []
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
                notes.append(f"animated:first_frame_of_{im.n_frames}")
            im.load()
        except Image.DecompressionBombError as exc:
            raise ImageRejected("image:too_large", str(exc)) from None
        except Exception as exc:
            raise _decode_error(exc, data) from None
    try:
        orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # unreadable EXIF is ignored, pixels are fine
        orientation = 1
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        im = ImageOps.exif_transpose(im)
        notes.append(f"exif:orientation_{orientation}_applied")
    im, mode_note = _to_8bit(im)
    if mode_note:
        notes.append(mode_note)
    if fmt not in KEEP_FORMATS:
        notes.append(f"format:{fmt}->PNG")
    if notes:
        stored, out_fmt = _encode_png(im), "PNG"
    else:
        stored, out_fmt = data, fmt
    return NormalisedImage(
        data=stored,
        sha256=hashlib.sha256(stored).hexdigest(),
        width=im.width,
        height=im.height,
        format=out_fmt,
        phash=phash(im),
        notes=tuple(notes),
    )


def stored_phash(path: Path) -> int:
    """The perceptual hash of a stored image file (the same as its :class:`NormalisedImage`'s ``phash``)."""
    with Image.open(path) as im:
        im.load()
        return phash(im)


def image_relpath(sha256: str, fmt: str) -> str:
    """Path of a stored image relative to the run directory."""
    return f"images/{sha256[:2]}/{sha256}.{EXTENSIONS.get(fmt, fmt.lower())}"


def image_entry(img: NormalisedImage) -> dict[str, Any]:
    """The schema's image dict of ``img`` (its path is where :func:`store_image` puts it)."""
    rel = image_relpath(img.sha256, img.format)
    return {"sha256": img.sha256, "path": rel, "width": img.width, "height": img.height, "format": img.format}


def store_image(img: NormalisedImage, run_dir: Path) -> dict[str, Any]:
    """Write ``img`` under ``run_dir/images/`` once (atomic rename); return the schema's image dict."""
    entry = image_entry(img)
    path = Path(run_dir) / entry["path"]
    if not (path.exists() and path.stat().st_size == len(img.data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(img.data)
        os.replace(tmp, path)
    return entry


# ---------------------------------------------------------------- perceptual hash

_N = 32


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``C @ x`` is the DCT of column vector ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0, :] = math.sqrt(1.0 / n)
    return c


_DCT = _dct_matrix(_N)


def _flatten_rgb(im: Image.Image) -> Image.Image:
    """RGB on a white background (alpha composited), any mode accepted."""
    if im.mode not in _PLAIN_MODES:
        im, _ = _to_8bit(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def phash(pil_image: Image.Image) -> int:
    """64-bit DCT perceptual hash: gray 32x32, 2-D DCT, top-left 8x8, bit = coefficient > median."""
    gray = _flatten_rgb(pil_image).convert("L").resize((_N, _N), Image.Resampling.LANCZOS)
    x = np.asarray(gray, dtype=np.float64)
    low = (_DCT @ x @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return bin(a ^ b).count("1")


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_POP[x.view(np.uint8)].reshape(-1, 8).sum(axis=1)


_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class PhashIndex:
    """Perceptual hashes with a payload each; nearest-match queries by vectorised Hamming distance."""

    def __init__(self) -> None:
        self._arr = np.zeros(0, dtype=np.uint64)
        self._pending: list[int] = []
        self._keys: list[Any] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, h: int, key: Any = None) -> None:
        self._pending.append(h)
        self._keys.append(key)

    def _hashes(self) -> np.ndarray:
        if self._pending:
            self._arr = np.concatenate([self._arr, np.array(self._pending, dtype=np.uint64)])
            self._pending = []
        return self._arr

    def query(self, h: int, max_distance: int) -> tuple[int, Any] | None:
        """``(distance, key)`` of the nearest stored hash within ``max_distance`` (first added on ties), else None."""
        arr = self._hashes()
        if arr.size == 0:
            return None
        dist = _popcount(arr ^ np.uint64(h))
        i = int(np.argmin(dist))
        d = int(dist[i])
        return (d, self._keys[i]) if d <= max_distance else None


# ---------------------------------------------------------------- teacher input and merging


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the same aspect and at most ``max_pixels`` (never upscaled)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > max_pixels and (w > 1 or h > 1):
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


def data_url(path: Path, max_pixels: int) -> str:
    """``data:image/...;base64,...`` of the image at ``path`` downscaled to ``max_pixels`` (PNG if alpha, else JPEG)."""
    with Image.open(path) as src:
        src.seek(0)
        im = ImageOps.exif_transpose(src)
        if im.mode not in _PLAIN_MODES:
            im, _ = _to_8bit(im)
        alpha = _has_alpha(im)
        im = im.convert("RGBA" if alpha else "RGB")
    size = _fit(im.width, im.height, max_pixels)
    if size != im.size:
        im = im.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if alpha:
        im.save(buf, "PNG")
        mime = "image/png"
    else:
        im.save(buf, "JPEG", quality=90)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


Box = tuple[int, int, int, int]


def stitch_layout(sizes: list[tuple[int, int]], max_pixels: int) -> tuple[tuple[int, int], list[Box]]:
    """Canvas size and one ``(x, y, w, h)`` box per input for :func:`stitch`.

    Inputs go in rows of ``c`` (c = n: side by side); in each row they share a height, and rows share the canvas
    width, so every aspect is kept. ``c`` is the one that brings the canvas nearest to square (ties: more columns).
    The natural size keeps each row at its tallest member's height; it is scaled down to fit ``max_pixels``.
    """
    if not sizes:
        raise ValueError("stitch needs at least one image")
    if any(w <= 0 or h <= 0 for w, h in sizes):
        raise ValueError(f"stitch got an empty image: sizes {sizes}")
    n = len(sizes)
    aspects = [w / h for w, h in sizes]
    best: tuple[float, int] | None = None
    for c in range(n, 0, -1):
        rows = [aspects[i : i + c] for i in range(0, n, c)]
        canvas_aspect = 1.0 / sum(1.0 / sum(r) for r in rows)
        score = abs(math.log(canvas_aspect))
        if best is None or score < best[0] - 1e-9:
            best = (score, c)
    assert best is not None
    c = best[1]
    rows_idx = [list(range(i, min(i + c, n))) for i in range(0, n, c)]
    natural_w = max(sum(aspects[i] for i in r) * max(sizes[i][1] for i in r) for r in rows_idx)
    natural_h = sum(natural_w / sum(aspects[i] for i in r) for r in rows_idx)
    scale = min(1.0, math.sqrt(max_pixels / (natural_w * natural_h)))
    canvas_w = max(1, int(natural_w * scale))
    boxes: list[Box] = [(0, 0, 0, 0)] * n
    y = 0
    for r in rows_idx:
        row_h = max(1, int(canvas_w / sum(aspects[i] for i in r)))
        x = 0
        for i in r:
            w = max(1, min(int(aspects[i] * row_h), canvas_w - x))
            boxes[i] = (x, y, w, row_h)
            x += w
        y += row_h
    canvas_h = y
    if canvas_w * canvas_h > max_pixels:  # only when max(1, ...) floors bite on a tiny budget
        raise ValueError(f"max_pixels {max_pixels} is too small to stitch {n} images")
    return (canvas_w, canvas_h), boxes


def stitch(images: list[Image.Image], max_pixels: int) -> Image.Image:
    """Merge images into one RGB image on white: side by side (or a grid nearer square), aspect kept, within budget."""
    (cw, ch), boxes = stitch_layout([im.size for im in images], max_pixels)
    canvas = Image.new("RGB", (cw, ch), (255, 255, 255))
    for im, (x, y, w, h) in zip(images, boxes, strict=True):
        canvas.paste(_flatten_rgb(im).resize((w, h), Image.Resampling.LANCZOS), (x, y))
    return canvas
