"""The pipeline stages, in run order. Each is a module ``corpus.stages.<name>`` exposing

- ``HELP``: one paragraph for ``corpus <stage> --help``;
- ``run(recipe, run_dir, force=False) -> dict``: do the stage (skip when its manifest matches),
  return the manifest;
- optionally ``stats(run_dir) -> dict``: stage-specific figures for ``corpus stats``.

A stage joins ``corpus run`` and gets its own CLI sub-command by appearing in ``STAGE_ORDER`` with a
module of that name; names with a dash map to modules with an underscore.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

STAGE_ORDER = ["ingest", "synthesize", "filter", "export", "train-sft", "sample", "concat", "rl-export", "train-rl",
               "evaluate"]


def module_name(stage: str) -> str:
    return "corpus.stages." + stage.replace("-", "_")


def get_stage(stage: str) -> ModuleType:
    return importlib.import_module(module_name(stage))


def available_stages() -> list[str]:
    """Stages of STAGE_ORDER whose module exists, in run order (found, not imported)."""
    return [stage for stage in STAGE_ORDER if importlib.util.find_spec(module_name(stage)) is not None]


@cache
def stage_help(stage: str) -> str:
    """A stage's ``HELP`` paragraph, read from its module's source: the CLI lists every stage without importing
    them (their imports cost a command that runs one stage a third of its start-up time)."""
    spec = importlib.util.find_spec(module_name(stage))
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no stage module {module_name(stage)}")
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{spec.origin}: no HELP = '...' literal at module level")
