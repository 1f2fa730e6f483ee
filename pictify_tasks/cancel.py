"""One step of an idempotent cancel: ledger, lease, HTTP, record. No Celery here.

The task runs :func:`cancel_step` and turns a :class:`RetryLater` into a Celery
retry, so the whole decision (return, wait, retry, fail) is testable alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable

from pictify_tasks.backoff import backoff_delay
from pictify_tasks.client import PictifyClient
from pictify_tasks.errors import CancelFailedError, PictifyError, cut_short
from pictify_tasks.ids import idempotency_key_for
from pictify_tasks.ratelimit import Priority, RateLimiter, Unlimited
from pictify_tasks.retry import RetryPolicy
from pictify_tasks.store.base import StateStore, StateStoreError
from pictify_tasks.store.records import FailureRecord, OutcomeRecord

__all__ = ["CancelContext", "GiveUp", "RetryLater", "cancel_step"]

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
    #: The attempt that failed (0 for a wait).
    attempt: int = 0


@dataclass(frozen=True)
class GiveUp:
    """The cancel failed for good: raise ``error``; ``attempts`` HTTP attempts were made.

    It is recorded in the ledger already (when the store answered).
    """

    error: PictifyError
    attempts: int


@dataclass(frozen=True)
class CancelContext:
    """What one cancel step needs besides the batch id and the owner."""

    store: StateStore
    client: Callable[[], PictifyClient]
    policy: RetryPolicy
    lease_seconds: float
    ttl: int
    asked_at: float
    limiter: RateLimiter = dataclasses.field(default_factory=Unlimited)
    #: The workflow the batch belongs to, whose saved items the outcome adds to.
    workflow_id: str | None = None
    now: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random


def cancel_step(
    batch_id: str, owner: str, context: CancelContext, *, waits: int = 0
) -> OutcomeRecord | RetryLater | GiveUp:
    """Return the batch's cancel outcome, say when to look again, or give up.

    ``waits`` counts this task's earlier steps (its retries). It gives up
    when there is no budget left (the policy's deadline, counted from
    ``asked_at``, or its attempt cap), after recording a final failure.
    A state store that cannot be reached is a transient error like any other.
    """
    store = context.store
    try:
        begin = store.begin_cancel(batch_id, owner, context.lease_seconds, context.asked_at)
    except StateStoreError as error:
        return _store_trouble(error, waits, context)
    if begin.outcome is not None:
        return dataclasses.replace(begin.outcome, replayed=True)
    if begin.failure is not None:
        failure = begin.failure
        failed = CancelFailedError(
            f"cancel of batch {batch_id} failed for good after {failure.attempts} attempt(s): "
            f"{failure.message}",
            status=failure.status,
        )
        return GiveUp(failed, failure.attempts)
    if not begin.acquired:
        cap = min(MAX_LEASE_WAIT, max(begin.lease_remaining, 0.05))
        wait = backoff_delay(
            waits + 1, base=FIRST_LEASE_WAIT, cap=cap, jitter=0.5, rand=context.rand
        )
        return RetryLater(countdown=max(0.05, wait))

    attempt = begin.attempt
    unconfirmed = begin.fresh_keys
    try:
        wait = context.limiter.acquire(Priority.CANCEL)
    except StateStoreError as error:
        return _store_trouble(error, waits, context, attempts=attempt - 1)
    if wait > 0:
        # No token yet: no attempt made.
        elapsed = context.now() - context.asked_at
        late = context.policy.token_too_late(f"cancel of batch {batch_id}", wait, elapsed)
        if late is not None:
            _record_failure(batch_id, owner, late, attempt - 1, context, retry_in=None)
            return GiveUp(late, attempt - 1)
        # Keep the lease through the wait, so a duplicate does not take it and
        # book a second place in the queue.
        with contextlib.suppress(StateStoreError):
            store.keep_lease(batch_id, owner, wait + context.lease_seconds)
        return RetryLater(countdown=wait)
    # After a 200 that did not confirm the cancel, the same key would only get
    # that answer replayed: every later attempt is a new request, with a key of its
    # own ask (attempts count again from 1 after a final failure).
    key = None
    if unconfirmed:
        key = idempotency_key_for("cancel", f"{batch_id}/{context.asked_at!r}/{attempt}")
    try:
        result = context.client().cancel_batch(batch_id, idempotency_key=key)
    except PictifyError as error:
        return _failed(batch_id, owner, error, attempt, context)
    except Exception as exc:
        # Not an API answer (the soft time limit, an OSError, a bug): the outcome
        # is unknown, so it is a failed attempt like a dropped connection.
        cut = cut_short(f"cancel of batch {batch_id}", exc)
        return _failed(batch_id, owner, cut, attempt, context)
    except BaseException:
        # The worker is going away (a shutdown, an exit): give the lease back so
        # that the redelivered message or a duplicate can go on at once.
        with contextlib.suppress(StateStoreError):
            store.fail_cancel(owner, FailureRecord.interrupted(batch_id, attempt), context.ttl, 0)
        raise
    # The batch still ran when the unconfirmed answer came: that cancel stopped it.
    stopped = "cancelled" if unconfirmed and result.status == "cancelled" else result.outcome
    outcome = OutcomeRecord(
        batch_id,
        result.status,
        stopped,
        attempt,
        result.message,
        items_not_rendered=_not_rendered(stopped, begin.progress),
    )
    try:
        recorded = store.finish_cancel(
            owner, outcome, context.ttl, begin.links, workflow_id=context.workflow_id
        )
    except StateStoreError as error:
        # The API has the cancel; the next step replays it (same Idempotency-Key).
        later = _store_trouble(error, waits, context)
        if isinstance(later, RetryLater):
            return later
        # No budget left to record it: the API's answer stands, told unrecorded.
        logger.warning(
            "batch %s's cancel outcome (%s) was not recorded: %s", batch_id, stopped, error
        )
        return outcome
    return recorded


def _failed(
    batch_id: str, owner: str, error: PictifyError, attempt: int, context: CancelContext
) -> RetryLater | GiveUp:
    elapsed = context.now() - context.asked_at
    wait = context.policy.next_wait(error, attempt, elapsed, rand=context.rand)
    _record_failure(batch_id, owner, error, attempt, context, retry_in=wait)
    if wait is None:
        return GiveUp(error, attempt)
    return RetryLater(countdown=wait, error=error, attempt=attempt)


def _record_failure(
    batch_id: str,
    owner: str,
    error: PictifyError,
    attempts: int,
    context: CancelContext,
    *,
    retry_in: float | None,
) -> None:
    """Record a failure in the ledger: final without ``retry_in``, else the lease is kept."""
    keep = 0.0 if retry_in is None else retry_in + context.lease_seconds
    failure = _failure(batch_id, error, attempts, final=retry_in is None, at=context.now())
    try:
        context.store.fail_cancel(owner, failure, context.ttl, keep)
    except StateStoreError as store_error:
        logger.warning(
            "the failure of batch %s's cancel was not recorded: %s", batch_id, store_error
        )


def _store_trouble(
    error: StateStoreError, waits: int, context: CancelContext, *, attempts: int = 0
) -> RetryLater | GiveUp:
    """The store is down: wait and try again within the deadline (the policy's rule).

    Giving up, ``attempts`` is what the ledger said was made (0 before it answered).
    """
    elapsed = context.now() - context.asked_at
    wait = context.policy.next_wait(error, waits + 1, elapsed, rand=context.rand)
    if wait is None:
        return GiveUp(error, attempts)
    return RetryLater(countdown=wait, error=error)


def _not_rendered(outcome: str, progress: tuple[int, int] | None) -> int | None:
    """What this cancel saved: the items not rendered at the last look (if it stopped the batch)."""
    if outcome != "cancelled" or progress is None:
        return None
    completed, total = progress
    return max(0, total - completed)


def _failure(
    batch_id: str, error: PictifyError, attempt: int, *, final: bool, at: float
) -> FailureRecord:
    return FailureRecord(
        batch_id=batch_id,
        error=type(error).__name__,
        message=str(error),
        status=error.status,
        attempts=attempt,
        final=final,
        at=at,
    )
