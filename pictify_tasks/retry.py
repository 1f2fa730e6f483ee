"""The retry policy as a small immutable value, apart from the code that retries.

The task asks the policy two questions, "retry after this error?" and "how
long to wait?", so the decision can be tested without Celery or HTTP.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from pictify_tasks.backoff import backoff_delay
from pictify_tasks.errors import PictifyError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, with the server's word as a floor.

    ``attempt`` counts HTTP attempts from 1. The wait before attempt ``n+1`` is
    uniform in ``[0, min(backoff_max, backoff_base * 2**(n-1))]`` (full jitter,
    so that many workers retrying at once spread out), raised to the error's
    ``retry_after`` when the API sent one: the server knows better than our cap.
    """

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base <= 0 or self.backoff_max <= 0:
            raise ValueError("backoff_base and backoff_max must be greater than 0")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether attempt ``attempt`` failing with ``error`` deserves another."""
        return isinstance(error, PictifyError) and error.retryable and attempt < self.max_attempts

    def backoff_ceiling(self, attempt: int) -> float:
        """The largest jittered wait after attempt ``attempt``."""
        return backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_max, jitter=0.0)

    def countdown(
        self,
        attempt: int,
        error: BaseException | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after attempt ``attempt`` failed with ``error``."""
        wait = backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_max, rand=rand)
        floor = getattr(error, "retry_after", None)
        if isinstance(floor, (int, float)) and floor > wait:
            wait = float(floor)
        return wait
