"""store_image, phash / PhashIndex, data_url and stitch on real images."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import pytest
from image_factory import encode, scene
from PIL import Image

from corpus.images import PhashIndex, data_url, hamming, normalise_image, phash, stitch, store_image


def test_store_image_writes_once(tmp_path, photo):
    img = normalise_image(encode(photo, "JPEG"), max_pixels=10**7, max_bytes=10**7)
    rec = store_image(img, tmp_path)
    assert rec == {
        "sha256": img.sha256,
        "path": f"images/{img.sha256[:2]}/{img.sha256}.jpg",
        "width": photo.width,
        "height": photo.height,
        "format": "JPEG",
    }
    path = tmp_path / rec["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == img.sha256
    st = path.stat()
    assert store_image(img, tmp_path) == rec
    st2 = path.stat()
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), "second store must not rewrite"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp files left behind"


def test_phash_stable_under_resize_and_recompression():
    base = scene(3, (320, 240))
    h = phash(base)
    resized = base.resize((250, 188), Image.Resampling.BILINEAR)
    recompressed = Image.open(io.BytesIO(encode(base, "JPEG", quality=60)))
    assert hamming(h, phash(resized)) <= 4
    assert hamming(h, phash(recompressed)) <= 4
    assert hamming(h, phash(base.copy())) == 0


def test_phash_far_for_different_images():
    hashes = [phash(scene(s)) for s in range(10, 16)]
    dists = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(dists) >= 14, dists


def test_phash_index_nearest_within_distance():
    idx = PhashIndex()
    assert idx.query(123, 10) is None
    base = scene(4)
    for s in range(20, 30):
        idx.add(phash(scene(s)), f"other-{s}")
    idx.add(phash(base), "target")
    near = phash(Image.open(io.BytesIO(encode(base.resize((200, 150)), "JPEG", quality=70))))
    d, key = idx.query(near, 6)
    assert key == "target" and d == hamming(near, phash(base))
    flipped = near ^ ((1 << 64) - 1)  # every bit differs from the target
    hit = idx.query(flipped, 6)
    assert hit is None or hit[1] != "target"
    idx.add(flipped, "flipped")  # added after the first query: the index grows
    assert idx.query(flipped, 0) == (0, "flipped")
    assert len(idx) == 12


def _decode(url: str) -> tuple[str, Image.Image]:
    head, b64 = url.split(",", 1)
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return head, im


def test_data_url_downscales_within_budget(tmp_path):
    path = tmp_path / "a.png"
    scene(5, (400, 300)).save(path)
    head, im = _decode(data_url(path, 30_000))
    assert head == "data:image/jpeg;base64" and im.format == "JPEG"
    assert im.width * im.height <= 30_000
    assert abs(im.width / im.height - 4 / 3) < 0.02
    _, full = _decode(data_url(path, 10**6))
    assert full.size == (400, 300), "never upscaled, kept when within budget"


def test_data_url_keeps_alpha_as_png(tmp_path):
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (50, 40), (0, 0, 255, 100)).save(path)
    head, im = _decode(data_url(path, 500))
    assert head == "data:image/png;base64" and im.mode == "RGBA" and im.width * im.height <= 500
    assert im.getpixel((0, 0))[3] == 100


def _mean(im: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(im.crop(box).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


def test_stitch_side_by_side_keeps_aspect_and_budget():
    red, blue = Image.new("RGB", (300, 150), "red"), Image.new("RGB", (100, 200), "blue")
    out = stitch([red, blue], 20_000)
    w, h = out.size
    assert w * h <= 20_000 and out.mode == "RGB"
    assert w > h, "two images go side by side"
    red_w = round(h * 2)  # red is 2:1 at the common height, blue 1:2
    assert abs(red_w + round(h / 2) - w) <= 2
    assert np.allclose(_mean(out, (1, 1, red_w - 2, h - 1)), [255, 0, 0], atol=3)
    assert np.allclose(_mean(out, (red_w + 2, 1, w - 1, h - 1)), [0, 0, 255], atol=3)


def test_stitch_four_squares_makes_a_grid():
    colors = ["red", "lime", "blue", "yellow"]
    out = stitch([Image.new("RGB", (64, 64), c) for c in colors], 10**6)
    assert out.size == (128, 128), "four squares at natural size: a 2x2 grid, no upscaling"
    expect = {(0, 0): (255, 0, 0), (64, 0): (0, 255, 0), (0, 64): (0, 0, 255), (64, 64): (255, 255, 0)}
    for (x, y), rgb in expect.items():
        assert np.allclose(_mean(out, (x + 2, y + 2, x + 62, y + 62)), rgb, atol=3)


def test_stitch_flattens_alpha_on_white_and_rejects_empty():
    clear = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    out = stitch([clear], 10_000)
    assert out.getpixel((10, 10)) == (255, 255, 255)
    with pytest.raises(ValueError):
        stitch([], 1000)
