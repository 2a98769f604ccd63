"""Shared helpers of the image-source tests: build a spec, run an adapter, draw an image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from realdata_path import REALDATA

from corpus.recipe import SourceSpec
from corpus.resources import samples_dir
from corpus.sources.base import Draft, Drop, adapter_class

REAL = REALDATA
SAMPLES = samples_dir()


def spec(adapter: str, path: Path | str, images_root: Path | str | None = None, **kw: Any) -> SourceSpec:
    return SourceSpec(name=f"t_{adapter}", adapter=adapter, path=str(path),
                      images_root=str(images_root) if images_root else None, **kw)


def run(s: SourceSpec) -> tuple[list[tuple[int, Draft]], list[tuple[int, Drop]]]:
    """All drafts and drops of a source: (record index, draft) and (record index, drop)."""
    cls = adapter_class(s.adapter)
    src = cls(s)
    drafts, drops = [], []
    for rec in src.records(Path(s.path)):
        if rec.drop is not None:
            drops.append((rec.index, rec.drop))
            continue
        out = src.convert(rec.fields, rec.index)
        if isinstance(out, Drop):
            drops.append((rec.index, out))
        else:
            drafts.extend((rec.index, d) for d in out)
    return drafts, drops


def png(words: str = "x", size: tuple[int, int] = (48, 32), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    im = Image.new("RGB", size, colour)
    ImageDraw.Draw(im).text((2, 2), words, fill=(255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()
