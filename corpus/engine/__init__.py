"""Engines that run stage units (local process pool, Ray Data) and the unit runner stages share."""

from corpus.engine.base import (
    ENGINES,
    Engine,
    EngineError,
    EngineSpec,
    LocalEngine,
    RayEngine,
    Work,
    current_engine,
    make_engine,
    use_engine,
)

__all__ = ["ENGINES", "Engine", "EngineError", "EngineSpec", "LocalEngine", "RayEngine", "Work", "current_engine",
           "make_engine", "use_engine"]
