"""The API's rate limit as the tasks see it: ask for a token before each request.

Pictify limits requests per API key. Celery's ``rate_limit`` is per worker
process, so the package asks a limiter before every request it sends, with a
priority: a cancel goes before a start, a start before a poll. A task told
to wait reschedules itself with that countdown; it never sleeps in a worker.
The limiter shared by every worker is :mod:`pictify_tasks.limiter`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Protocol

from pictify_tasks.models import RateLimitInfo

__all__ = ["Priority", "Rate", "RateLimiter", "Unlimited", "parse_rate"]


class Priority(enum.IntEnum):
    """Who goes first when the budget is short (lower goes first)."""

    CANCEL = 0
    START = 1
    POLL = 2


class RateLimiter(Protocol):
    """Hands out request tokens, and hears what the API said about its limit."""

    def acquire(self, priority: Priority) -> float:
        """Take a token: 0.0 to send now, else the seconds to wait before asking again.

        Raises ``StateStoreError`` (transient) when a shared limiter's store cannot be asked.
        """

    def observe(self, status: int, info: RateLimitInfo) -> None:
        """One response's status and ``X-RateLimit-*`` headers (never raises)."""


class Unlimited:
    """The limiter when no limit is known: every request may go at once."""

    def acquire(self, priority: Priority) -> float:
        return 0.0

    def observe(self, status: int, info: RateLimitInfo) -> None:
        """Nothing to correct."""


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+)\s*(?:/\s*([smh])\s*)?")


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``per`` seconds (``pictify_rate_limit``)."""

    count: int
    per: float

    def __post_init__(self) -> None:
        if self.count < 1 or not self.per > 0:
            raise ValueError(f"a rate needs at least 1 request per window, got {self}")

    def __str__(self) -> str:
        unit = {seconds: name for name, seconds in _UNITS.items()}.get(self.per)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per:g}s"


def parse_rate(value: object) -> Rate:
    """A rate written as Celery writes ``rate_limit``: ``"300/m"``, ``"5/s"``, ``"1000/h"``.

    A bare whole number is per second, as in Celery. Raises ``ValueError``
    (or ``TypeError``) for anything else, including a rate of 0: no limit is
    written by leaving the setting unset.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return Rate(value, 1.0)
    if not isinstance(value, str):
        raise TypeError(value)
    match = _RATE.fullmatch(value)
    if match is None:
        raise ValueError(value)
    count, unit = match.groups()
    return Rate(int(count), _UNITS[unit or "s"])
