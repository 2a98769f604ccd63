"""Checkpoint contracts: load a schema file from ``schemas/`` and enforce it on Arrow tables."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc

from corpus.resources import resource


class SchemaError(ValueError):
    """A table does not match its checkpoint contract."""


_SCALARS = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}


def parse_type(spec: str) -> pa.DataType:
    """Parse the small type language used in schema files: scalars, ``list<T>``, ``struct<a:T,b:U>``."""
    spec = spec.strip()
    if spec in _SCALARS:
        return _SCALARS[spec]
    m = re.fullmatch(r"list<(.*)>", spec)
    if m:
        return pa.list_(parse_type(m.group(1)))
    m = re.fullmatch(r"struct<(.*)>", spec)
    if m:
        fields = []
        for name, sub in _split_fields(m.group(1)):
            fields.append(pa.field(name, parse_type(sub)))
        return pa.struct(fields)
    raise SchemaError(f"unknown type {spec!r}")


def _split_fields(body: str) -> list[tuple[str, str]]:
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    out = []
    for p in parts:
        name, _, sub = p.partition(":")
        out.append((name.strip(), sub.strip()))
    return out


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    allowed: tuple | None = None
    allowed_fields: dict | None = None
    description: str = ""


@dataclass(frozen=True)
class Schema:
    """A checkpoint contract: ordered columns with types, nullability and allowed values."""

    name: str
    version: int
    columns: tuple[Column, ...]
    extra_allowed: bool = field(default=False)

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def extend(self, other: Schema) -> Schema:
        """This schema's columns followed by the other's (a later stage adding columns)."""
        mine = set(self.names)
        cols = self.columns + tuple(c for c in other.columns if c.name not in mine)
        return Schema(other.name, other.version, cols, other.extra_allowed)

    def dropped_arrow(self, *extra: pa.Field) -> pa.Schema:
        """Arrow schema of this stage's dropped rows: the drop columns, then this schema's row, then ``extra``."""
        drop = load_schema("dropped").arrow
        return pa.schema(list(drop) + [f for f in self.arrow if f.name not in drop.names] + list(extra))

    def empty(self) -> pa.Table:
        return self.arrow.empty_table()

    def conform(self, table: pa.Table, where: str = "") -> pa.Table:
        """Return ``table`` with exactly this schema's columns, order and types, or raise SchemaError.

        Checks presence, casts compatible types, rejects nulls in non-null columns and values outside
        ``allowed``. Extra columns are an error unless the schema allows them (then kept at the end).
        """
        loc = f" in {where}" if where else ""
        missing = [c.name for c in self.columns if c.name not in table.column_names]
        if missing:
            raise SchemaError(f"{self.name} schema{loc}: missing columns {missing}")
        extra = [n for n in table.column_names if n not in self.names]
        if extra and not self.extra_allowed:
            raise SchemaError(f"{self.name} schema{loc}: unexpected columns {extra}")
        arrays, fields = [], []
        for col in self.columns:
            arr = table.column(col.name)
            if arr.type != col.type:
                try:
                    arr = arr.cast(col.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(
                        f"{self.name} schema{loc}: column {col.name!r} has type {arr.type}, expected {col.type}"
                    ) from exc
            if not col.nullable and arr.null_count:
                raise SchemaError(f"{self.name} schema{loc}: column {col.name!r} has {arr.null_count} nulls")
            if col.allowed is not None:
                _check_allowed(arr, col.allowed, f"{self.name} schema{loc}: column {col.name!r}")
            if col.allowed_fields:
                for fname, allowed in col.allowed_fields.items():
                    sub = pc.struct_field(arr, fname)
                    _check_allowed(sub, tuple(allowed), f"{self.name} schema{loc}: field {col.name}.{fname}")
            arrays.append(arr)
            fields.append(pa.field(col.name, col.type, nullable=col.nullable))
        for name in extra:
            arrays.append(table.column(name))
            fields.append(table.schema.field(name))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _check_allowed(arr, allowed: tuple, what: str) -> None:
    allow_null = None in allowed
    values = [a for a in allowed if a is not None]
    bad_mask = pc.invert(pc.is_in(arr, value_set=pa.array(values, type=arr.type)))
    if allow_null:
        bad_mask = pc.and_(bad_mask, pc.is_valid(arr))
    bad = pc.filter(arr, pc.fill_null(bad_mask, False))
    if len(bad):
        raise SchemaError(f"{what} has values outside {list(allowed)}: {bad.unique().to_pylist()[:5]}")


@cache
def load_schema(name: str) -> Schema:
    """Load ``schemas/<name>.json``."""
    doc = json.loads(resource("schemas", f"{name}.json").read_text(encoding="utf-8"))
    cols = []
    for c in doc["columns"]:
        allowed = tuple(c["allowed"]) + ((None,) if c.get("nullable") else ()) if "allowed" in c else None
        cols.append(
            Column(
                name=c["name"],
                type=parse_type(c["type"]),
                nullable=bool(c.get("nullable", False)),
                allowed=allowed,
                allowed_fields=c.get("allowed_fields"),
                description=c.get("description", ""),
            )
        )
    return Schema(doc["name"], int(doc["version"]), tuple(cols), bool(doc.get("extra_columns", False)))
