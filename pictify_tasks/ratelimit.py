"""The API's rate limit as the tasks see it: ask for a token before each request.

Pictify limits requests per API key. Celery's ``rate_limit`` is per worker
process, so the package asks a limiter before every request it sends, with a
priority: a cancel goes before a start, a start before a poll. A task told
to wait reschedules itself with that countdown; it never sleeps in a worker.
The limiter shared by every worker is :mod:`pictify_tasks.limiter`. What an
answer says about the budget (``X-RateLimit-*``, ``Retry-After``) is read
here, once per answer, into a :class:`RateLimitInfo`.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import Protocol

__all__ = [
    "RETRY_AFTER_STATUSES",
    "Priority",
    "Rate",
    "RateLimitInfo",
    "RateLimiter",
    "Unlimited",
    "parse_rate",
    "parse_retry_after",
    "rate_limit_from",
]

#: The statuses whose ``Retry-After`` is read; on any other it is ignored.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Seconds as the RFC writes them (digits), with an optional fraction; no sign, no exponent.
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class RateLimitInfo:
    """One answer's ``X-RateLimit-*`` headers, and its ``Retry-After`` in seconds (429/503 only).

    ``reset`` is Unix seconds. Every field is ``None`` when its header is
    missing or unreadable.
    """

    limit: int | None
    remaining: int | None
    reset: float | None
    retry_after: float | None = None

    def reset_wait(self, now: float | None = None) -> float | None:
        """Seconds until ``reset`` passes (0.0 once it has), or ``None`` without one."""
        if self.reset is None:
            return None
        return max(0.0, self.reset - (time.time() if now is None else now))


def rate_limit_from(
    status: int, headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo:
    """What an answer's headers (a case-insensitive mapping) say about the budget."""
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
    return RateLimitInfo(
        limit=_whole(headers.get("X-RateLimit-Limit")),
        remaining=_whole(headers.get("X-RateLimit-Remaining")),
        reset=_decimal((headers.get("X-RateLimit-Reset") or "").strip()),
        retry_after=retry_after,
    )


def parse_retry_after(value: object, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header or a body's ``retryAfter``.

    One reading for both places, in the spirit of urllib3's ``Retry``: a JSON
    number, decimal seconds (``"2"``, ``"1.5"``) or an HTTP date (UTC when it
    names no zone, as HTTP dates are GMT). Anything else (``inf``, NaN, a
    negative number, a bool, text, a date no clock can hold) is garbage and
    gives ``None``, never a wait or an exception: the caller falls back to its
    normal backoff. No cap here; the retry policy caps the wait.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _finite_seconds(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    seconds = _decimal(text)
    if seconds is not None:
        return seconds
    current = time.time() if now is None else now
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:  # never the local time: that would depend on the worker's zone
            when = when.replace(tzinfo=timezone.utc)
        return _finite_seconds(max(0.0, when.timestamp() - current))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _decimal(text: str) -> float | None:
    """Decimal seconds (digits, maybe a fraction) as a finite float; ``None`` otherwise."""
    return _finite_seconds(float(text)) if _DECIMAL.fullmatch(text) else None


def _finite_seconds(number: float) -> float | None:
    try:
        seconds = float(number)
    except OverflowError:  # an int too large for a float
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _whole(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


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
