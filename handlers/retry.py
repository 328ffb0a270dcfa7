"""The retry policy for transient failures: a pure function, tested on its own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``delay = min(cap, max(hint, base * 2 ** (attempt - 1)))``; ``max_retries`` retries."""

    base_seconds: float = 60.0
    max_seconds: float = 3600.0
    max_retries: int = 3

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds to wait before ``attempt + 1``, after ``attempt`` failed transiently.

        The server's hint (Retry-After, estimated_time) is honoured as a minimum,
        and the cap bounds both: a server that says "come back in a week" is
        asked again after ``max_seconds``.
        """
        backoff = self.base_seconds * 2 ** max(0, attempt - 1)
        return float(min(self.max_seconds, max(hint or 0.0, backoff)))
