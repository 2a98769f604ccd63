"""The source adapter contract: read a seed dataset's records and turn each into sample drafts.

An adapter knows one dataset family's real columns and label mapping. It never touches images on
disk, dedup or the store: it returns :class:`Draft` objects (or a :class:`Drop` with a reason) and
the ingest stage does the rest. Adapters register themselves by name with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

HARMFUL, UNHARMFUL = "harmful", "unharmful"


class SourceError(Exception):
    """A whole source cannot be read (missing file or column): fails the stage with a clear message."""


@dataclass
class ImageInput:
    """An image as the seed provides it: raw bytes, or a path relative to the source's image root."""

    data: bytes | None = None
    ref: str | None = None


@dataclass
class Draft:
    """One sample before images are stored and ids assigned (see schemas/sample.json)."""

    source_id: str
    prompt: str | None = None
    response: str | None = None
    images: list[ImageInput] = field(default_factory=list)
    request_label: str | None = None
    response_label: str | None = None
    refusal_label: str | None = None
    raw_categories: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Drop:
    """A record the adapter cannot use; becomes a dropped row with ``reason``."""

    reason: str
    detail: str = ""


@dataclass
class Record:
    """One raw record of a seed file: its position and its fields (or a Drop if unreadable)."""

    index: int
    fields: dict[str, Any] | None
    drop: Drop | None = None


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source:
    """Base class of adapters. Subclasses set ``adapter``, ``required_columns`` and implement ``convert``.

    ``records()`` (reading the hub id or local path) is shared; override it only for layouts that are
    not a table of records (e.g. an annotation folder).
    """

    adapter: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    required_columns: ClassVar[tuple[str, ...]] = ()
    #: raw categories of this adapter are looked up under this taxonomy section (default: adapter name)
    taxonomy_section: ClassVar[str | None] = None

    def __init__(self, spec: Any, options: BaseModel | None = None):
        self.spec = spec
        self.options = options if options is not None else self.Options.model_validate(spec.options or {})
        #: ``spec.images_root`` resolved by the recipe (set by the ingest stage; adapters that walk it use it)
        self.images_root: Path | None = None

    def records(self, path: Path | None) -> Iterator[Record]:
        """Raw records of the source; ``path`` is ``spec.path`` resolved by the recipe (None for hub ids)."""
        from corpus.sources.loaders import iter_records

        yield from iter_records(self.spec, self.required_columns, path)

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        raise NotImplementedError

    def source_id(self, fields: dict[str, Any], index: int, key: str | None = None) -> str:
        """The record's own id when it has one, else its row number."""
        value = fields.get(key) if key else None
        return str(value) if value not in (None, "") else str(index)


_REGISTRY: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    if not cls.adapter:
        raise ValueError(f"{cls.__name__} has no adapter name")
    _REGISTRY[cls.adapter] = cls
    return cls


def adapter_class(name: str) -> type[Source]:
    import corpus.sources  # noqa: F401  (registers the built-in adapters)

    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown source adapter {name!r}; known: {sorted(_REGISTRY)}") from None


def adapters() -> dict[str, type[Source]]:
    import corpus.sources  # noqa: F401

    return dict(_REGISTRY)


def label_missing(value: Any) -> bool:
    """True for a label cell that holds nothing: None, NaN (pandas-written files) or a blank string."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and not value.strip()


def missing_label(column: str, value: Any = None, absent: bool = False) -> Drop:
    """The drop of a record whose label cell is absent, null or empty: ``missing_label:<column>``."""
    state = "absent" if absent else ("null" if value is None or value != value else f"empty ({value!r})")
    return Drop(f"missing_label:{column}", f"{column} is {state}: the record has no label")


def map_label(value: Any, mapping: dict[Any, str | None], column: str) -> str | None | Drop:
    """Map a seed label through ``mapping``; a missing value is ``missing_label:<column>``, an unknown one
    ``unknown_label:<column>`` (both Drops naming column and value)."""
    if label_missing(value):
        return missing_label(column, value)
    key = value.strip().lower() if isinstance(value, str) else value
    for k, v in mapping.items():
        kk = k.strip().lower() if isinstance(k, str) else k
        if kk == key and type(kk) is type(key):
            return v
    return Drop(f"unknown_label:{column}", f"{column}={value!r} is not one of {list(mapping)}")
