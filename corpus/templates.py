"""Fill prompt templates without ``str.format``: untrusted text with braces comes through unchanged.

Placeholders are ``{{name}}``. Substitution is a single pass over the template, so a value that
itself contains ``{{x}}`` or ``{`` is inserted verbatim and never re-expanded.
"""

from __future__ import annotations

import re
from functools import cache

from corpus.resources import resource

_PLACEHOLDER = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")


def fill(template: str, **values: str) -> str:
    """Replace each ``{{name}}`` with ``values[name]``; a missing or unused value is an error."""
    used: set[str] = set()

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in values:
            raise KeyError(f"template placeholder {{{{{name}}}}} has no value")
        used.add(name)
        return values[name]

    out = _PLACEHOLDER.sub(sub, template)
    unused = set(values) - used
    if unused:
        raise KeyError(f"values given for placeholders the template lacks: {sorted(unused)}")
    return out


@cache
def load_prompt(name: str) -> str:
    """Text of ``prompts/<name>`` (shipped with the package)."""
    return resource("prompts", name).read_text(encoding="utf-8")
