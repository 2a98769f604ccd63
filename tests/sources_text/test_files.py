"""ImageRoot: folders and zips, and every way a seed path may try to leave the root."""

from __future__ import annotations

import os
import zipfile

import pytest

from corpus.images import ImageRejected
from corpus.sources.files import BadImagePath, ImageRoot, MissingImage, clean_relpath


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"img-x")
    (tmp_path / "secret.png").write_bytes(b"secret")
    return root


def test_folder_read(folder):
    root = ImageRoot(folder)
    assert root.read("a/x.png") == b"img-x"
    assert root.read("./a//x.png") == b"img-x"
    assert root.read("a\\x.png") == b"img-x"


@pytest.mark.parametrize("bad", ["../secret.png", "a/../../secret.png", "/etc/passwd", "C:/Windows/x.png",
                                 "c:\\x.png", "", "a/\x00.png", "..\\secret.png"])
def test_bad_paths_rejected(folder, bad):
    with pytest.raises(BadImagePath) as err:
        ImageRoot(folder).read(bad)
    assert err.value.reason == "image:bad_path"
    assert isinstance(err.value, ImageRejected)  # the ingest stage records it as a drop


def test_symlink_escaping_root_rejected(folder):
    os.symlink(folder.parent / "secret.png", folder / "a" / "link.png")
    os.symlink(folder / "a" / "x.png", folder / "inside.png")
    root = ImageRoot(folder)
    with pytest.raises(BadImagePath, match="outside"):
        root.read("a/link.png")
    assert root.read("inside.png") == b"img-x"  # a symlink that stays inside is fine


def test_missing_file(folder):
    with pytest.raises(MissingImage) as err:
        ImageRoot(folder).read("a/nope.png")
    assert err.value.reason == "image:missing"


def test_zip_read_without_extracting(tmp_path):
    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train/hatefulMemes/1.png", b"meme")
        zf.writestr("../evil.png", b"evil")
    with ImageRoot(z) as root:
        assert root.read("train/hatefulMemes/1.png") == b"meme"
        with pytest.raises(BadImagePath):
            root.read("../evil.png")
        with pytest.raises(BadImagePath):
            root.read("train/../../evil.png")
        with pytest.raises(MissingImage):
            root.read("train/2.png")
    assert not (tmp_path / "train").exists()
    assert ImageRoot(z, prefix="train").read("hatefulMemes/1.png") == b"meme"


def test_root_must_exist_and_be_folder_or_zip(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageRoot(tmp_path / "none")
    f = tmp_path / "plain.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="neither"):
        ImageRoot(f)


def test_clean_relpath():
    assert clean_relpath("./a/./b.png") == "a/b.png"


def test_damaged_zip_member_is_a_drop_not_a_crash(tmp_path):
    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ok.png", b"fine")
        zf.writestr("bad.png", b"x" * 64)
    data = bytearray(z.read_bytes())
    data[data.find(b"x" * 64)] = ord("y")  # the member's CRC no longer matches
    z.write_bytes(bytes(data))
    with ImageRoot(z) as root:
        assert root.read("ok.png") == b"fine"
        with pytest.raises(ImageRejected) as err:
            root.read("bad.png")
    assert err.value.reason == "image:corrupt" and "bad.png" in err.value.detail
