"""Live progress of the synthesize stage: rows/s, tokens, cost so far and the projected total."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Counts rows as their answers resolve: paid (answered by the API now), cached, or missing (no
    answer: a recorded failure or no cached response). ``spent`` is what this attempt paid (API calls);
    the projection assumes the remaining rows cost what the paid rows did on average."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, desc: str = "synthesize"):
        self.total, self.done = total, done
        self.prompt_tokens = self.completion_tokens = 0
        self.spent = 0.0
        self.paid_rows = self.cached_rows = self.missing_rows = 0
        self.started = time.monotonic()
        self._bar = tqdm(total=total, initial=done, unit="row", desc=desc, disable=not enabled,
                         file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        self._last = 0.0

    def update(self, rows: int, *, paid: bool, answered: bool = True, prompt_tokens: int = 0,
               completion_tokens: int = 0, cost: float = 0.0) -> None:
        self.done += rows
        if not answered:  # a failure or no cached answer: nothing bought, even if the API was called
            self.missing_rows += rows
        elif paid:
            self.paid_rows += rows
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.spent += cost
        else:
            self.cached_rows += rows
        self._bar.update(rows)
        now = time.monotonic()
        if now - self._last > 0.5 or self.done >= self.total:
            self._last = now
            self._bar.set_postfix_str(self.postfix(), refresh=False)

    @property
    def projected(self) -> float:
        """Projected spend of this attempt when every remaining row is paid at the average so far."""
        if not self.paid_rows:
            return self.spent
        return self.spent + self.spent / self.paid_rows * max(0, self.total - self.done)

    @property
    def rows_per_s(self) -> float:
        dt = time.monotonic() - self.started
        return (self.paid_rows + self.cached_rows + self.missing_rows) / dt if dt > 0 else 0.0

    def postfix(self) -> str:
        return (f"tok {self.prompt_tokens / 1e3:.1f}k in/{self.completion_tokens / 1e3:.1f}k out "
                f"${self.spent:.4f} (proj ${self.projected:.4f}) cached {self.cached_rows} missing {self.missing_rows}")

    def summary(self) -> dict:
        return {"rows_per_s": round(self.rows_per_s, 3), "paid_rows": self.paid_rows,
                "cached_rows": self.cached_rows, "missing_rows": self.missing_rows, "spent_usd": round(self.spent, 6),
                "projected_usd": round(self.projected, 6), "seconds": round(time.monotonic() - self.started, 3)}

    def close(self) -> None:
        self._bar.set_postfix_str(self.postfix(), refresh=False)
        self._bar.close()
