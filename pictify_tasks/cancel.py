"""One step of an idempotent cancel: ledger, lease, HTTP, record. No Celery here.

The task runs :func:`cancel_step` and turns a :class:`RetryLater` into a Celery
retry, so the whole decision (return, wait, retry, fail) is testable alone.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable

from pictify_tasks.backoff import backoff_delay
from pictify_tasks.client import PictifyClient
from pictify_tasks.errors import PictifyError
from pictify_tasks.retry import RetryPolicy
from pictify_tasks.store.base import StateStore
from pictify_tasks.store.records import FailureRecord, OutcomeRecord

__all__ = ["RetryLater", "cancel_step"]

logger = logging.getLogger("pictify_tasks.cancel")

#: The first and the longest wait between looks at a lease another task holds:
#: most leases end with one HTTP call, so look again soon, then less often.
FIRST_LEASE_WAIT = 0.1
MAX_LEASE_WAIT = 5.0


@dataclass(frozen=True)
class RetryLater:
    """Run the step again after ``countdown`` seconds.

    ``error`` is the failure that made it necessary, or ``None`` when another
    task holds the lease and this one only waits to read its outcome.
    """

    countdown: float
    error: PictifyError | None = None


def cancel_step(
    batch_id: str,
    owner: str,
    *,
    store: StateStore,
    client: Callable[[], PictifyClient],
    policy: RetryPolicy,
    lease_seconds: float,
    ttl: int,
    waits: int = 0,
    rand: Callable[[], float] = random.random,
) -> OutcomeRecord | RetryLater:
    """Return the batch's cancel outcome, or say when to look again.

    Raises the API's error when it is final (not retryable, or the last
    attempt), after recording it in the ledger as a failure.
    """
    begin = store.begin_cancel(batch_id, owner, lease_seconds)
    if begin.outcome is not None:
        return begin.outcome
    if not begin.acquired:
        cap = min(MAX_LEASE_WAIT, max(begin.lease_remaining, 0.05))
        wait = backoff_delay(waits + 1, base=FIRST_LEASE_WAIT, cap=cap, jitter=0.5, rand=rand)
        return RetryLater(countdown=max(0.05, wait))

    attempt = begin.attempt
    try:
        result = client().cancel_batch(batch_id)
    except PictifyError as error:
        if policy.should_retry(error, attempt):
            countdown = policy.countdown(attempt, error, rand=rand)
            store.fail_cancel(
                owner,
                _failure(batch_id, error, attempt, final=False),
                ttl,
                keep_lease=countdown + lease_seconds,
            )
            logger.warning(
                "%s (attempt %d of %d); retrying in %.2fs",
                error,
                attempt,
                policy.max_attempts,
                countdown,
            )
            return RetryLater(countdown=countdown, error=error)
        store.fail_cancel(owner, _failure(batch_id, error, attempt, final=True), ttl, 0)
        logger.error("cancel of batch %s failed after %d attempt(s): %s", batch_id, attempt, error)
        raise
    except BaseException:
        # Not an API answer (a bug, a worker shutting down): give the lease back
        # so that the redelivered message or a duplicate can go on at once.
        store.fail_cancel(owner, FailureRecord.interrupted(batch_id, attempt), ttl, 0)
        raise
    recorded = store.finish_cancel(
        owner,
        OutcomeRecord(batch_id, result.status, result.outcome, attempt, result.message),
        ttl,
    )
    logger.info(
        "cancel of batch %s: %s (status %s) after %d attempt(s)",
        batch_id,
        recorded.outcome,
        recorded.status,
        recorded.attempts,
    )
    return recorded


def _failure(batch_id: str, error: PictifyError, attempt: int, *, final: bool) -> FailureRecord:
    return FailureRecord(
        batch_id=batch_id,
        error=type(error).__name__,
        message=str(error),
        status=error.status,
        attempts=attempt,
        final=final,
        at=time.time(),
    )
