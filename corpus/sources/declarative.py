"""The ``declarative`` adapter: a new dataset described in the recipe alone, no code.

Options (all validated, unknown keys rejected):

- ``prompt``, ``response``: columns holding the request text and the assistant response (either may be
  omitted: an image-only source has no ``prompt``; a prompt-only source no ``response``).
- ``images``: column holding the image(s): bytes, a path relative to the source's ``images_root``, an
  HF ``{bytes, path}`` dict, or a list of these.
- ``id``: column with the record's own id (default: the row number).
- ``categories``: column with the raw harm categories: a list, or a string split on
  ``category_separator`` (no separator: the whole string is one category).
- ``request_label``, ``response_label``, ``refusal_label``: how each label is read; a
  :class:`LabelRule` (``column`` + ``values`` mapping seed values to labels, ``null`` = the teacher
  decides) or just a constant label (``request_label: harmful``). Omitted: null (teacher decides).
  Values match case-insensitively as text, so ``"1"``, ``1`` and ``true``/``True`` all work.
- ``filter``: ``{column: value}`` or ``{column: [values]}``; rows that do not match every entry are
  dropped with reason ``filtered:<column>``.
- ``meta``: columns copied into the row's meta.
- ``taxonomy_section``: the taxonomy section mapping this source's raw categories (default: the source
  name). Raw strings that are already taxonomy names map to themselves; others are listed in the
  taxonomy's unmapped report.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from corpus.sources.base import Draft, Drop, ImageInput, Source, missing_label, register
from corpus.sources.loaders import as_image_input
from corpus.sources.text import Strict, is_missing, one_category, split_categories, text

Scalar = str | int | float | bool


def _key(value: Any) -> str:
    return str(value).strip().lower()


class LabelRule(Strict):
    """How one label is read: a constant, or a column whose values map to labels."""

    column: str | None = Field(None, description="Column holding the seed's label value.")
    values: dict[Scalar, str | None] = Field(
        default_factory=dict, description="Seed value -> label (null: the teacher decides)."
    )
    constant: str | None = Field(None, description="The same label for every row (instead of column/values).")
    missing: Literal["teacher", "drop"] = Field(
        "teacher", description="An empty cell in `column`: leave the label to the teacher, or drop the row."
    )

    @model_validator(mode="after")
    def _one_way(self) -> LabelRule:
        if (self.column is None) == (self.constant is None):
            raise ValueError("give either `constant` or `column` (with `values`)")
        if self.column is not None and not self.values:
            raise ValueError(f"`values` must map the values of column {self.column!r} to labels")
        return self


_ALLOWED = {
    "request_label": ("harmful", "unharmful"),
    "response_label": ("harmful", "unharmful"),
    "refusal_label": ("refusal", "compliance"),
}


class DeclarativeOptions(Strict):
    prompt: str | None = None
    response: str | None = None
    images: str | None = None
    id: str | None = None
    categories: str | None = None
    category_separator: str | None = None
    request_label: LabelRule | None = None
    response_label: LabelRule | None = None
    refusal_label: LabelRule | None = None
    filter: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    meta: list[str] = Field(default_factory=list)
    taxonomy_section: str | None = None

    @field_validator("request_label", "response_label", "refusal_label", mode="before")
    @classmethod
    def _constant_shorthand(cls, v: Any) -> Any:
        return {"constant": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> DeclarativeOptions:
        if self.prompt is None and self.images is None:
            raise ValueError("map at least one of `prompt` or `images` to a column")
        for name, allowed in _ALLOWED.items():
            rule: LabelRule | None = getattr(self, name)
            if rule is None:
                continue
            used = [rule.constant] if rule.constant is not None else list(rule.values.values())
            bad = [v for v in used if v is not None and v not in allowed]
            if bad:
                raise ValueError(f"{name}: labels {bad} are not among {list(allowed)}")
        return self

    def columns(self) -> tuple[str, ...]:
        """Every column the options name (each must exist in the file)."""
        cols = [self.prompt, self.response, self.images, self.id, self.categories, *self.filter, *self.meta]
        cols += [r.column for r in (self.request_label, self.response_label, self.refusal_label) if r is not None]
        return tuple(dict.fromkeys(c for c in cols if c))


@register
class Declarative(Source):
    """A dataset described entirely by its options (see the module docstring)."""

    adapter = "declarative"
    Options = DeclarativeOptions

    def __init__(self, spec: Any, options: BaseModel | None = None):
        super().__init__(spec, options)
        opts: DeclarativeOptions = self.options  # type: ignore[assignment]
        self.required_columns = opts.columns()  # type: ignore[misc]
        self.taxonomy_section = opts.taxonomy_section or spec.name  # type: ignore[misc]

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        o: DeclarativeOptions = self.options  # type: ignore[assignment]
        for col, want in o.filter.items():
            wanted = want if isinstance(want, list) else [want]
            if _key(fields.get(col)) not in {_key(w) for w in wanted}:
                return Drop(f"filtered:{col}", f"{col}={fields.get(col)!r} is not {want!r}")
        prompt = text(fields, o.prompt) if o.prompt else None
        if isinstance(prompt, Drop):
            return prompt
        response = text(fields, o.response, required=False) if o.response else None
        if isinstance(response, Drop):
            return response
        images = self._images(fields, o.images) if o.images else []
        if isinstance(images, Drop):
            return images
        if prompt is None and not images:
            return Drop(f"missing_value:{o.images}", f"{o.images} holds no image")
        labels: dict[str, str | None] = {}
        for name in _ALLOWED:
            got = self._label(getattr(o, name), fields, name)
            if isinstance(got, Drop):
                return got
            labels[name] = got
        if response is None:
            labels["response_label"] = labels["refusal_label"] = None
        cats: list[str] = []
        if o.categories:
            value = fields.get(o.categories)
            if o.category_separator or isinstance(value, list):
                cats = split_categories(value, o.category_separator)
            else:
                cats = one_category(value)
        return [Draft(
            source_id=self.source_id(fields, index, o.id), prompt=prompt, response=response, images=images,
            raw_categories=cats, meta={c: fields.get(c) for c in o.meta}, **labels,
        )]

    @staticmethod
    def _label(rule: LabelRule | None, fields: dict[str, Any], name: str) -> str | None | Drop:
        if rule is None:
            return None
        if rule.constant is not None:
            return rule.constant
        assert rule.column is not None
        value = fields.get(rule.column)
        if is_missing(value):
            if rule.missing == "drop":
                return missing_label(rule.column, value, absent=rule.column not in fields)
            return None
        table = {_key(k): v for k, v in rule.values.items()}
        if _key(value) not in table:
            return Drop(f"unknown_label:{rule.column}", f"{rule.column}={value!r} is not one of {list(rule.values)}")
        return table[_key(value)]

    @staticmethod
    def _images(fields: dict[str, Any], column: str) -> list[ImageInput] | Drop:
        value = fields.get(column)
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            try:
                img = as_image_input(item)
            except TypeError as exc:
                return Drop(f"invalid_field:{column}", str(exc))
            if img is not None:
                out.append(img)
        return out
