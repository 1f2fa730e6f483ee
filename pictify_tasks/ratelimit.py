"""The API's rate limit as the tasks see it: ask for a token before each request.

Pictify limits requests per API key. Celery's ``rate_limit`` is per worker
process, so the package asks a limiter before every request it sends, with a
priority: a cancel goes before a start, a start before a poll. A task told
to wait reschedules itself with that countdown; it never sleeps in a worker.
"""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["Priority", "RateLimiter", "Unlimited"]


class Priority(enum.IntEnum):
    """Who goes first when the budget is short (lower goes first)."""

    CANCEL = 0
    START = 1
    POLL = 2


class RateLimiter(Protocol):
    """Hands out request tokens."""

    def acquire(self, priority: Priority) -> float:
        """Take a token: 0.0 to send now, else the seconds to wait before asking again."""


class Unlimited:
    """The limiter when no limit is known: every request may go at once."""

    def acquire(self, priority: Priority) -> float:
        return 0.0
