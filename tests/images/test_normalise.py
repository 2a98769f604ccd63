"""normalise_image on real Pillow-made files: every bad input, every mode fix, and unchanged passthrough."""

from __future__ import annotations

import hashlib
import io
import time
import warnings

import numpy as np
import pytest
from image_factory import encode, forged_png, scene
from PIL import Image

from corpus.images import ImageRejected, normalise_image

BIG = 50_000_000
PIX = 89_478_485


def norm(data: bytes, max_pixels: int = PIX, max_bytes: int = BIG):
    return normalise_image(data, max_pixels=max_pixels, max_bytes=max_bytes)


def reject_reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageRejected) as err:
        norm(data, **kw)
    assert err.value.detail, "a rejection names what was wrong"
    return err.value.reason


def reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_plain_image_keeps_original_bytes(photo, fmt):
    data = encode(photo, fmt)
    out = norm(data)
    assert out.data == data and out.format == fmt and out.notes == ()
    assert (out.width, out.height) == photo.size
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert 0 <= out.phash < 2**64


def test_empty_bytes():
    assert reject_reason(b"") == "image:empty"


def test_too_many_bytes(photo):
    data = encode(photo, "PNG")
    assert reject_reason(data, max_bytes=len(data) - 1) == "image:too_many_bytes"


def test_garbage_is_corrupt():
    assert reject_reason(b"this is not an image at all" * 10) == "image:corrupt"


def test_png_with_damaged_pixel_data_is_corrupt(photo):
    data = bytearray(encode(photo, "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 400] = b"\xff" * 390  # break the zlib stream inside IDAT
    assert reject_reason(bytes(data)) in ("image:corrupt", "image:truncated")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_file(fmt):
    noisy = Image.effect_noise((300, 300), 60).convert("RGB")
    data = encode(noisy, fmt)
    assert reject_reason(data[: len(data) * 2 // 3]) == "image:truncated"


def test_decompression_bomb_header_rejected_fast_without_decoding():
    data = forged_png(30000, 30000)
    assert len(data) < 200
    before = Image.MAX_IMAGE_PIXELS
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reason = reject_reason(data)
    elapsed = time.perf_counter() - t0
    assert reason == "image:too_large"
    assert elapsed < 0.5, f"bomb check took {elapsed:.3f}s: it must not decode"
    assert Image.MAX_IMAGE_PIXELS == before, "PIL's global limit must not change"
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_header_over_our_budget_but_under_pil_limit_rejected():
    data = forged_png(5000, 5000)  # 25M pixels: PIL would accept it, our budget does not
    t0 = time.perf_counter()
    with pytest.raises(ImageRejected) as err:
        norm(data, max_pixels=1_000_000)
    assert err.value.reason == "image:too_large" and "5000x5000" in err.value.detail
    assert time.perf_counter() - t0 < 0.5


def test_animated_gif_keeps_first_frame():
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "lime", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = norm(buf.getvalue())
    assert out.format == "PNG" and any(n.startswith("animated:") for n in out.notes)
    im = reopen(out.data)
    assert getattr(im, "n_frames", 1) == 1
    r, g, b = im.convert("RGB").getpixel((20, 15))
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), "red")
    im.paste(Image.new("RGB", (20, 20), "blue"), (20, 0))  # left red, right blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate 90 degrees clockwise
    out = norm(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert (out.width, out.height) == (20, 40)
    assert out.format == "PNG" and "exif:orientation_6_applied" in out.notes
    shown = reopen(out.data).convert("RGB")
    top, bottom = shown.getpixel((10, 5)), shown.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, top  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert shown.getexif().get(0x0112, 1) == 1


def test_cmyk_jpeg_becomes_rgb_png():
    cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # red in CMYK
    out = norm(encode(cmyk, "JPEG", quality=95))
    assert out.format == "PNG" and "mode:CMYK->RGB" in out.notes
    im = reopen(out.data)
    assert im.mode == "RGB" and im.size == (32, 24)
    r, g, b = im.getpixel((16, 12))
    assert r > 200 and g < 60 and b < 60


def test_16bit_grayscale_scaled_to_8bit():
    arr = np.tile(np.array([0, 257 * 64, 32896, 65535], dtype=np.uint16), (8, 4))  # 8x16
    out = norm(encode(Image.fromarray(arr), "PNG"))
    im = reopen(out.data)
    assert im.mode == "L" and out.format == "PNG"
    assert [im.getpixel((x, 0)) for x in range(4)] == [0, 64, 128, 255]


def test_palette_with_transparency_becomes_rgba():
    im = Image.new("P", (20, 10), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (10, 0, 20, 10))
    data = encode(im, "PNG", transparency=1)
    out = norm(data)
    got = reopen(out.data)
    assert got.mode == "RGBA" and out.format == "PNG"
    assert got.getpixel((2, 2)) == (255, 0, 0, 255)
    assert got.getpixel((15, 2))[3] == 0


def test_palette_without_transparency_kept_as_is():
    im = Image.new("P", (20, 10), 0)
    im.putpalette([10, 200, 30] + [0] * 765)
    data = encode(im, "PNG")
    out = norm(data)
    assert out.data == data and out.format == "PNG"


def test_bmp_is_reencoded_losslessly(photo):
    out = norm(encode(photo, "BMP"))
    assert out.format == "PNG" and "format:BMP->PNG" in out.notes
    assert np.array_equal(np.asarray(reopen(out.data).convert("RGB")), np.asarray(photo))


def test_other_scene_has_other_hash():
    a, b = norm(encode(scene(1), "PNG")), norm(encode(scene(2), "PNG"))
    assert a.sha256 != b.sha256 and a.phash != b.phash


def test_stored_phash_equals_the_normalised_phash(tmp_path):
    """A resumed ingest rebuilds its image clusters from the stored files: their phash must be the one computed
    at normalisation, whatever normalisation changed (EXIF rotation, CMYK, palette with transparency, BMP)."""
    from image_factory import encode, scene

    from corpus.images import normalise_image, store_image, stored_phash

    exif = Image.Exif()
    exif[0x0112] = 6
    cases = {
        "plain_jpeg": encode(scene(1), "JPEG", quality=80),
        "exif_rotated": encode(scene(2), "JPEG", exif=exif.tobytes()),
        "cmyk": encode(scene(3).convert("CMYK"), "JPEG"),
        "palette_alpha": encode(scene(4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG",
                                transparency=0),
        "bmp": encode(scene(5), "BMP"),
    }
    for name, data in cases.items():
        norm = normalise_image(data, max_pixels=10**8, max_bytes=10**9)
        entry = store_image(norm, tmp_path)
        assert stored_phash(tmp_path / entry["path"]) == norm.phash, name
