"""The shared harm taxonomy: normalised category names and per-adapter maps of raw category strings.

The YAML (default: the shipped ``corpus/taxonomy.yaml``) has ``categories`` (name -> description) and
``sections`` (adapter/section name -> {raw string: [category names]}). :meth:`Taxonomy.map` looks a
raw string up in its section: exact match first, then case- and whitespace-insensitive; a raw string
that is itself a category name maps to itself. Raw strings found nowhere map to *nothing* (no guess,
no "other") and are counted; :meth:`Taxonomy.unmapped` reports them so a curator can extend the file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).with_name("taxonomy.yaml")


class TaxonomyError(ValueError):
    """The taxonomy file is missing, not YAML, or maps to a category it does not define."""


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


class Taxonomy:
    """Normalised harm categories and per-section raw-category maps (see the module docstring)."""

    def __init__(self, categories: dict[str, str], sections: dict[str, dict[str, list[str]]], origin: str = ""):
        self.categories = dict(categories)
        self.sections = {s: dict(m) for s, m in sections.items()}
        self.origin = origin
        self._folded = {s: {_norm(k): v for k, v in m.items()} for s, m in self.sections.items()}
        self._names = {_norm(n): n for n in self.categories}
        self._unmapped: Counter[tuple[str, str]] = Counter()

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        """Load a taxonomy YAML; ``None`` loads the shipped default."""
        p = Path(path) if path is not None else DEFAULT_PATH
        if not p.is_file():
            raise TaxonomyError(f"taxonomy file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise TaxonomyError(f"{p}: not valid YAML: {exc}") from None
        return cls.from_dict(data, str(p))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<taxonomy>") -> Taxonomy:
        """Validate a parsed taxonomy mapping: every mapped name must be a declared category."""
        if not isinstance(data, dict) or not isinstance(data.get("categories"), dict):
            raise TaxonomyError(f"{origin}: needs a `categories` mapping of name -> description")
        categories = {str(k): str(v or "") for k, v in data["categories"].items()}
        sections: dict[str, dict[str, list[str]]] = {}
        for section, mapping in (data.get("sections") or {}).items():
            if mapping is None:
                mapping = {}
            if not isinstance(mapping, dict):
                raise TaxonomyError(f"{origin}: sections.{section} must be a mapping of raw category -> names")
            out: dict[str, list[str]] = {}
            for raw, names in mapping.items():
                names = [] if names is None else [names] if isinstance(names, str) else names
                if not isinstance(names, list):
                    raise TaxonomyError(f"{origin}: sections.{section}.{raw!r} must be a list of category names")
                unknown = [n for n in names if n not in categories]
                if unknown:
                    raise TaxonomyError(
                        f"{origin}: sections.{section}.{raw!r} maps to undefined categor(ies) {unknown}; "
                        f"defined: {sorted(categories)}"
                    )
                out[str(raw)] = list(dict.fromkeys(names))
            sections[str(section)] = out
        return cls(categories, sections, origin)

    @property
    def names(self) -> list[str]:
        return list(self.categories)

    def lookup(self, section: str, raw: str) -> list[str] | None:
        """The categories of one raw string, or None when neither the section nor the names know it."""
        mapping = self.sections.get(section, {})
        if raw in mapping:
            return mapping[raw]
        key = _norm(raw)
        folded = self._folded.get(section, {})
        if key in folded:
            return folded[key]
        if key in self._names:
            return [self._names[key]]
        return None

    def map(self, section: str, raw_categories: list[str] | tuple[str, ...] | None) -> list[str]:
        """Normalised categories of a row's raw categories (deduplicated, first-seen order).

        Unknown raw strings contribute nothing and are counted (see :meth:`unmapped`).
        """
        out: dict[str, None] = {}
        for raw in raw_categories or ():
            if not isinstance(raw, str) or not raw.strip():
                continue
            found = self.lookup(section, raw)
            if found is None:
                self._unmapped[(section, raw)] += 1
                continue
            out.update(dict.fromkeys(found))
        return list(out)

    def unmapped(self) -> dict[str, dict[str, int]]:
        """Raw strings seen by :meth:`map` that no section knows: {section: {raw: count}}."""
        report: dict[str, dict[str, int]] = {}
        for (section, raw), n in sorted(self._unmapped.items()):
            report.setdefault(section, {})[raw] = n
        return report
