"""Image roots: a folder or a zip archive in which a record's relative image paths resolve.

Paths come from untrusted seed data, so they are checked before anything is opened: absolute paths,
drive letters, ``..`` segments and symlinks that lead out of the root are rejected with
:class:`BadImagePath` (the ingest stage records ``image:bad_path``); a path that is fine but not
there raises :class:`MissingImage` (``image:missing``). Zip members are read without extracting.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from corpus.images import ImageRejected
from corpus.sources.base import SourceError

_DRIVE = re.compile(r"^[A-Za-z]:")


class ImagePathError(ImageRejected):
    """Base of the image-path errors (an :class:`ImageRejected`, so ingest records ``reason`` as the drop)."""

    default_reason = "image:error"

    def __init__(self, detail: str):
        super().__init__(self.default_reason, detail)


class BadImagePath(ImagePathError):
    default_reason = "image:bad_path"


class MissingImage(ImagePathError):
    default_reason = "image:missing"


def clean_relpath(relpath: str) -> str:
    """Check a relative image path and return it in POSIX form; raise :class:`BadImagePath` if unsafe."""
    if not isinstance(relpath, str) or not relpath.strip():
        raise BadImagePath(f"image path {relpath!r} is empty or not a string")
    if "\x00" in relpath:
        raise BadImagePath(f"image path {relpath!r} contains a NUL byte")
    p = relpath.replace("\\", "/")
    if p.startswith("/") or _DRIVE.match(p):
        raise BadImagePath(f"image path {relpath!r} is absolute; paths must be relative to the image root")
    parts = [s for s in PurePosixPath(p).parts if s not in ("", ".")]
    if ".." in parts:
        raise BadImagePath(f"image path {relpath!r} contains '..'")
    if not parts:
        raise BadImagePath(f"image path {relpath!r} names no file")
    return "/".join(parts)


class ImageRoot:
    """A folder or a ``.zip`` file that relative image paths resolve in.

    ``prefix`` (zip only) is a folder inside the archive that paths are relative to.
    """

    def __init__(self, location: str | Path, prefix: str = ""):
        self.location = Path(location)
        if not self.location.exists():
            raise FileNotFoundError(f"image root {self.location} does not exist")
        self.is_zip = self.location.is_file() and zipfile.is_zipfile(self.location)
        if not self.is_zip and not self.location.is_dir():
            if self.location.suffix.lower() == ".zip":
                raise ValueError(f"image root {self.location} is neither a folder nor a zip file: damaged zip "
                                 "archive (truncated, or a Git LFS pointer; its central directory is missing)")
            raise ValueError(f"image root {self.location} is neither a folder nor a zip file")
        self.prefix = clean_relpath(prefix) + "/" if prefix else ""
        self._zip: zipfile.ZipFile | None = None
        self._names: set[str] | None = None

    def __repr__(self) -> str:
        return f"ImageRoot({str(self.location)!r})"

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.location)
            except (zipfile.BadZipFile, OSError) as exc:  # the whole root is unusable: a clear error, not a drop
                cause = f"{type(exc).__name__}: {exc}"
                raise SourceError(f"image root {self.location}: damaged zip archive [{cause}]") from None
            self._names = set(self._zip.namelist())
        return self._zip

    def read(self, relpath: str) -> bytes:
        """The bytes of the image at ``relpath``; raises BadImagePath or MissingImage."""
        rel = clean_relpath(relpath)
        if self.is_zip:
            zf = self._archive()
            name = self.prefix + rel
            assert self._names is not None
            if name not in self._names:
                raise MissingImage(f"{rel} is not in {self.location}")
            try:
                return zf.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:  # bad CRC, cut member, ...
                raise ImageRejected("image:corrupt", f"{rel} cannot be read from {self.location}: {exc}") from None
        root = self.location.resolve()
        target = root / rel
        try:
            real = target.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops
            raise BadImagePath(f"{rel} cannot be resolved in {root}: {exc}") from None
        if real != root and root not in real.parents:
            raise BadImagePath(f"{rel} leads outside the image root {root} (symlink)")
        if not real.is_file():
            raise MissingImage(f"{rel} is not a file in {root}")
        try:
            return real.read_bytes()
        except OSError as exc:  # permissions, I/O errors: this image is dropped, the run goes on
            raise ImageRejected("image:unreadable", f"{rel} in {root}: {exc}") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> ImageRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
