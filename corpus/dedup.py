"""Exact dedup on normalised text plus image hashes, and copies whose labels disagree (:class:`LabelConflicts`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from corpus.textnorm import normalize_text


def content_key(prompt: str | None, response: str | None, image_sha256s: Iterable[str] = ()) -> str:
    """sha256 hex of (normalised prompt, normalised response, sorted image hashes); None and "" are the same."""
    payload = [normalize_text(prompt), normalize_text(response), sorted(image_sha256s)]
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class Deduper:
    """Seen-set of content keys remembering which source had each key first.

    Pre-seed it from the keys (and sources) of already-written parts so a resumed run rebuilds its state.
    """

    def __init__(self, keys: Iterable[str] = (), source: str | None = None):
        self._first: dict[str, str | None] = {}
        self.update(keys, source)

    def update(self, keys: Iterable[str], source: str | None = None) -> None:
        for k in keys:
            self._first.setdefault(k, source)

    def seen(self, key: str, source: str | None = None) -> bool:
        """True if ``key`` was seen before; otherwise record it (with ``source``) and return False."""
        if key in self._first:
            return True
        self._first[key] = source
        return False

    def first_source(self, key: str) -> str | None:
        """The source that first had ``key`` (None if unknown or unseen)."""
        return self._first.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def __len__(self) -> int:
        return len(self._first)


# ---------------------------------------------------------------- copies whose labels disagree

Labels = tuple[str | None, str | None, str | None]  # request, response, refusal
LABEL_NAMES = ("request", "response", "refusal")


def labels_conflict(a: Labels, b: Labels) -> bool:
    """True if two copies give different gold labels for the same task (a null label is unknown, not a vote)."""
    return any(x is not None and y is not None and x != y for x, y in zip(a, b, strict=True))


def describe_labels(labels: Labels) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(LABEL_NAMES, labels, strict=True) if v is not None) or "no labels"


@dataclass
class Holder:
    """The copy of a content key that is currently kept."""

    row_id: str
    source: str
    labels: Labels
    side: str = "kept"  # the side of the held-out split it is on ("kept" or "heldout")


@dataclass
class Verdict:
    """What to do with a later copy: ``duplicate``, ``label_conflict`` (drop it) or ``wins`` (keep it, and drop
    ``revoke``, the copy kept so far). ``revoke`` may also be set on a ``label_conflict`` (policy none: the copy
    kept so far is dropped too)."""

    kind: str
    detail: str
    revoke: tuple[str, str] | None = None  # (row id, detail) of an already kept copy that must be dropped
    holder: Holder | None = None  # the new holder of a "wins" verdict (recorded by LabelConflicts.apply)


class LabelConflicts:
    """Decides every later copy of an already kept sample by its labels.

    Agreeing labels: ``duplicate`` (the first copy stays). Disagreeing labels with ``keep="none"``: this copy
    and the kept one are both dropped as ``label_conflict``, and so is every later copy of that sample. With
    ``keep="priority"``: the copy from the source listed first in ``priority`` wins (unlisted sources rank
    last); copies of equally ranked sources conflict as with ``none``.

    :meth:`judge` changes nothing; :meth:`apply` records a verdict once the caller acts on it (a winning copy
    may still be dropped as a leak). Every change of state is also returned by :meth:`events` so a resumed
    run can replay it. Once a conflict has dropped every copy, every later copy is dropped too.
    """

    def __init__(self, keep: str = "none", priority: Iterable[str] = ()):
        self.keep = keep
        self.rank = {name: i for i, name in enumerate(priority)}
        self._holders: dict[str, Holder | None] = {}  # None: conflicted, no copy kept
        self._events: list[list] = []

    def _rank(self, source: str) -> int:
        return self.rank.get(source, len(self.rank))

    def first(self, key: str, row_id: str, source: str, labels: Labels, side: str = "kept") -> None:
        """Register the kept first copy of ``key`` (also used when replaying written parts)."""
        self._holders.setdefault(key, Holder(row_id, source, tuple(labels), side))

    def holder(self, key: str) -> Holder | None:
        return self._holders.get(key)

    def judge(self, key: str, row_id: str, source: str, labels: Labels) -> Verdict:
        labels = tuple(labels)
        held = self._holders.get(key, "unseen")
        if held is None:
            return Verdict("label_conflict", "a copy of a sample whose copies have conflicting labels")
        assert isinstance(held, Holder), f"judge() of an unseen key {key}"
        if not labels_conflict(held.labels, labels):
            return Verdict("duplicate", "same normalised text and images as an earlier row")
        what = (f"copy of row {held.row_id} (source {held.source}: {describe_labels(held.labels)}) "
                f"with {describe_labels(labels)} (source {source})")
        if self.keep == "priority" and self._rank(source) != self._rank(held.source):
            if self._rank(source) < self._rank(held.source):
                return Verdict("wins", what, (held.row_id, f"label conflict lost to source priority: {what}"),
                               Holder(row_id, source, labels, held.side))
            return Verdict("label_conflict", f"label conflict lost to source priority: {what}")
        return Verdict("label_conflict", f"conflicting labels: {what}; no copy kept",
                       (held.row_id, f"conflicting labels: {what}; no copy kept"))

    def apply(self, key: str, verdict: Verdict) -> None:
        """Record a verdict the caller acted on: a ``wins`` copy now holds the key; a conflict that dropped the
        kept copy leaves the key without one."""
        if verdict.kind == "wins":
            self._set(key, verdict.holder)
        elif verdict.kind == "label_conflict" and verdict.revoke is not None:
            self._set(key, None)

    def _set(self, key: str, holder: Holder | None) -> None:
        self._holders[key] = holder
        self._events.append([key, None if holder is None else
                             [holder.row_id, holder.source, list(holder.labels), holder.side]])

    def events(self) -> list[list]:
        """The state changes since the last call (JSON-able), for :meth:`replay`."""
        out, self._events = self._events, []
        return out

    def replay(self, events: Iterable[list]) -> None:
        for key, h in events:
            self._holders[key] = None if h is None else Holder(h[0], h[1], tuple(h[2]), h[3])
