"""The HTTP model types the installed openai SDK uses: ``httpx2`` (openai >= 3) or ``httpx`` (older)."""

from __future__ import annotations

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx  # type: ignore[no-redef]

__all__ = ["httpx"]
