"""Per-key rate limits: the counting; the answers are the middleware's."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

UNLIMITED = 1_000_000_000  # the limit advertised when rate limiting is off


@dataclass(frozen=True)
class RateDecision:
    """The outcome of counting one request, with what its headers should say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds when the window ends
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


@dataclass
class _Window:
    ends_monotonic: float
    ends_wall: float
    count: int = 0


class RateLimiter:
    """Fixed windows per API key, the simplest scheme that yields the real headers.

    A window starts with its key's first request after the last one ended.
    When the window is a whole number of seconds it starts at the whole
    second that request arrived in, so that ``X-RateLimit-Reset`` (whole
    Unix seconds) is its exact end, not an end rounded up by up to a second:
    a client that follows the headers can use the whole budget.
    """

    def __init__(self, limit: int | None, window: float) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self.configure(limit, window)

    def configure(self, limit: int | None, window: float) -> None:
        """A new limit (``None``: unlimited) and window; every key starts afresh."""
        if limit is not None and limit < 0:
            raise ValueError("rate_limit must be >= 0 or None")
        if window <= 0:
            raise ValueError("rate_window must be > 0")
        with self._lock:
            self._limit = limit
            self._window = float(window)
            self._windows.clear()

    @property
    def window(self) -> float:
        return self._window

    def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` (if the window has room) and say what became of it."""
        with self._lock:
            now, wall = time.monotonic(), time.time()
            window = self._windows.get(key)
            if window is None or now >= window.ends_monotonic:
                started = math.floor(wall) if self._window.is_integer() else wall
                ends_wall = started + self._window
                window = _Window(now + (ends_wall - wall), ends_wall)
                self._windows[key] = window
            limit = UNLIMITED if self._limit is None else self._limit
            allowed = window.count < limit
            if allowed:
                window.count += 1
            return RateDecision(
                allowed=allowed,
                limit=limit,
                remaining=max(0, limit - window.count),
                reset=math.ceil(window.ends_wall),
                retry_after=max(1, math.ceil(window.ends_monotonic - now)),
            )

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
