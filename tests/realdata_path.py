"""Where the shared real data files are: $CORPUS_REALDATA, else shared/realdata beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [Path(os.environ["CORPUS_REALDATA"])] if os.environ.get("CORPUS_REALDATA") else []
_CANDIDATES += [_ROOT.parent / "shared" / "realdata", Path("/work/shared/realdata")]

REALDATA: Path = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
