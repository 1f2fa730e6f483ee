"""The retry policy as a small immutable value, apart from the code that retries.

The task asks the policy two questions, "retry after this error?" and "how
long to wait?", so the decision can be tested without Celery or HTTP.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from pictify_tasks.backoff import backoff_delay
from pictify_tasks.errors import PictifyError, RateLimitError
from pictify_tasks.store.base import StateStoreError

__all__ = ["NoTokenInTimeError", "RetryPolicy"]


class NoTokenInTimeError(RateLimitError):
    """The rate limiter's next token comes after the deadline: a final failure."""

    retryable = False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, the server's word as a floor, a deadline.

    ``attempt`` counts HTTP attempts from 1 and ``elapsed`` the seconds since
    the cancel was first asked for. The wait before attempt ``n+1`` is uniform
    in ``[0, min(backoff_max, backoff_base * 2**(n-1))]`` (full jitter, so that
    many workers retrying at once spread out), raised to the error's
    ``retry_after`` when the API sent one, which is itself capped at
    ``retry_after_max`` (a broken or hostile server cannot park a cancel for
    days). No attempt starts after ``deadline``; ``max_attempts`` is an
    optional second bound (``None``: only the deadline) on HTTP attempts, so
    a state store that does not answer is bounded by the deadline alone.
    """

    max_attempts: int | None = None
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    deadline: float = 3600.0
    retry_after_max: float = 300.0

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ValueError(f"max_attempts must be None or at least 1, got {attempts!r}")
        for name in ("backoff_base", "backoff_max", "deadline", "retry_after_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number greater than 0, got {value!r}")

    def should_retry(self, error: BaseException, attempt: int, elapsed: float = 0.0) -> bool:
        """Whether attempt ``attempt`` failing with ``error`` deserves another.

        Not when the error says retrying cannot help, the attempts are used
        up, the deadline has passed, or the server's (capped) wait would
        carry the next attempt past the deadline.
        """
        if not (isinstance(error, PictifyError) and error.retryable):
            return False
        if (
            self.max_attempts is not None
            and attempt >= self.max_attempts
            and not isinstance(error, StateStoreError)
        ):
            return False
        remaining = self.deadline - elapsed
        if remaining <= 0:
            return False
        server_wait = self.server_wait(error)
        return server_wait is None or server_wait <= remaining

    def next_wait(
        self,
        error: BaseException,
        attempt: int,
        elapsed: float,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds before the next attempt, or ``None`` when there must be none.

        The countdown is clamped so that the next attempt starts no later
        than the deadline: the last try goes out at the deadline, not never.
        """
        if not self.should_retry(error, attempt, elapsed):
            return None
        return min(self.countdown(attempt, error, rand=rand), self.deadline - elapsed)

    def token_too_late(self, what: str, wait: float, elapsed: float) -> NoTokenInTimeError | None:
        """The final failure when the next request token comes after the deadline, else ``None``.

        A wait for a token reschedules the task; one that would end past the
        deadline would only send a request the budget no longer allows.
        """
        left = self.deadline - elapsed
        if wait <= left:
            return None
        return NoTokenInTimeError(
            f"{what}: no request token before the deadline (the next in {wait:.1f}s, "
            f"{max(left, 0.0):.1f}s left)",
            retry_after=wait,
        )

    def server_wait(self, error: BaseException | None) -> float | None:
        """The error's ``retry_after`` capped at ``retry_after_max``; ``None`` if it has none."""
        value = getattr(error, "retry_after", None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if math.isnan(value) or value < 0:
            return None
        return min(float(value), self.retry_after_max)

    def countdown(
        self,
        attempt: int,
        error: BaseException | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after attempt ``attempt`` failed with ``error`` (no deadline)."""
        wait = backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_max, rand=rand)
        floor = self.server_wait(error)
        return wait if floor is None else max(wait, floor)
