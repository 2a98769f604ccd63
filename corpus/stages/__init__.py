"""The pipeline stages, in run order. Each is a module ``corpus.stages.<name>`` exposing

- ``HELP``: one paragraph for ``corpus <stage> --help``;
- ``run(recipe, run_dir, force=False) -> dict``: do the stage (skip when its manifest matches),
  return the manifest;
- optionally ``stats(run_dir) -> dict``: stage-specific figures for ``corpus stats``.

A stage joins ``corpus run`` and gets its own CLI sub-command by appearing in ``STAGE_ORDER`` with a
module of that name; names with a dash map to modules with an underscore.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STAGE_ORDER = ["ingest", "synthesize", "filter", "export", "train-sft", "sample", "concat", "rl-export", "train-rl",
               "evaluate"]


def module_name(stage: str) -> str:
    return "corpus.stages." + stage.replace("-", "_")


def get_stage(stage: str) -> ModuleType:
    return importlib.import_module(module_name(stage))


def available_stages() -> list[str]:
    """Stages of STAGE_ORDER whose module exists, in run order."""
    out = []
    for stage in STAGE_ORDER:
        try:
            importlib.import_module(module_name(stage))
        except ModuleNotFoundError as exc:
            if exc.name != module_name(stage):
                raise
            continue
        out.append(stage)
    return out
