"""The cancel decision alone: ledger, lease, retry or fail (a stub client, no HTTP)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Union

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from pictify_tasks import (
    AuthenticationError,
    CancelNotConfirmedError,
    CancelResult,
    PictifyConnectionError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from pictify_tasks.cancel import CancelContext, GiveUp, RetryLater, cancel_step
from pictify_tasks.errors import CancelFailedError
from pictify_tasks.ratelimit import Priority
from pictify_tasks.retry import NoTokenInTimeError
from pictify_tasks.store import MemoryStore, OutcomeRecord, StateStore, StateStoreError
from tests.fakes import Limiter

Answer = Union[CancelResult, BaseException]


class StubClient:
    """Answers cancel requests from a script, and counts them."""

    def __init__(self, answers: list[Answer]) -> None:
        self._answers: Iterator[Answer] = iter(answers)
        self.calls = 0
        self.keys: list[str | None] = []

    def cancel_batch(self, batch_id: str, *, idempotency_key: str | None = None) -> CancelResult:
        self.calls += 1
        self.keys.append(idempotency_key)
        answer = next(self._answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer


CANCELLED = CancelResult("b1", "cancelled", "cancelled", "Batch cancelled")


ASKED = 1_700_000_000.0


def _step(*args: Any, **kwargs: Any) -> Any:
    """One step, as the task sees it: giving up raises the error."""
    return _unwrap(_decision(*args, **kwargs))


def _unwrap(decision: Any) -> Any:
    if isinstance(decision, GiveUp):
        raise decision.error
    return decision


def _decision(  # type: ignore[no-untyped-def]
    store: StateStore,
    client: StubClient,
    owner: str = "task-a",
    *,
    now: float = ASKED + 1,
    asked_at: float = ASKED,
    max_attempts: int | None = 3,
    deadline: float = 3600.0,
    waits: int = 0,
):
    policy = RetryPolicy(
        max_attempts=max_attempts, backoff_base=1.0, backoff_max=10.0, deadline=deadline
    )
    context = _context(store, client, policy=policy, asked_at=asked_at, now=lambda: now)
    return cancel_step("b1", owner, context, waits=waits)


def _context(store: StateStore, client: StubClient, **changes: Any) -> CancelContext:
    """A cancel context over ``store`` and ``client``, asked at ``ASKED``; ``changes`` replace."""
    context = CancelContext(
        store=store,
        client=lambda: client,  # type: ignore[arg-type,return-value]
        policy=RetryPolicy(),
        lease_seconds=30,
        ttl=3600,
        asked_at=ASKED,
        now=lambda: ASKED + 1,
        rand=lambda: 0.5,
    )
    return dataclasses.replace(context, **changes)


def test_success_is_recorded_and_later_calls_make_no_request() -> None:
    store, client = MemoryStore(), StubClient([CANCELLED])
    first = _step(store, client)
    assert first == OutcomeRecord("b1", "cancelled", "cancelled", 1, "Batch cancelled")
    assert _step(store, client, owner="task-b") == first
    assert client.calls == 1


def test_retryable_errors_retry_with_backoff_then_succeed_on_attempt_three() -> None:
    store = MemoryStore()
    client = StubClient([ServerError("503", status=503), ServerError("503", status=503), CANCELLED])
    first = _step(store, client)
    assert isinstance(first, RetryLater) and first.countdown == 0.5
    second = _step(store, client)
    assert isinstance(second, RetryLater) and second.countdown == 1.0
    result = _step(store, client)
    assert isinstance(result, OutcomeRecord) and result.attempts == 3
    assert client.calls == 3


def test_a_duplicate_waits_while_the_owner_retries() -> None:
    store = MemoryStore()
    client = StubClient([PictifyConnectionError("timed out"), CANCELLED])
    assert isinstance(_step(store, client), RetryLater)
    waiting = _step(store, client, owner="task-b")
    assert isinstance(waiting, RetryLater) and waiting.error is None
    assert 0.05 <= waiting.countdown <= 5.0
    assert client.calls == 1
    assert _step(store, client).outcome == "cancelled"  # type: ignore[union-attr]
    assert _step(store, client, owner="task-b").attempts == 2  # type: ignore[union-attr]


def test_retry_after_sets_the_countdown_floor() -> None:
    store = MemoryStore()
    client = StubClient([RateLimitError("429", status=429, retry_after=4.0)])
    decision = _step(store, client)
    assert isinstance(decision, RetryLater) and decision.countdown == 4.0


def test_the_last_attempt_fails_with_the_last_error_and_the_ledger_says_so() -> None:
    store = MemoryStore()
    client = StubClient(
        [
            ServerError("a", status=503),
            ServerError("b", status=502),
            ServerError("c", status=500),
            CANCELLED,
        ]
    )
    assert isinstance(_step(store, client), RetryLater)
    assert isinstance(_step(store, client), RetryLater)
    with pytest.raises(ServerError, match="c"):
        _step(store, client)
    state = store.cancel_state("b1")
    assert state.failure is not None and state.outcome is None
    failure = state.failure
    assert (failure.error, failure.status, failure.attempts, failure.final) == (
        "ServerError",
        500,
        3,
        True,
    )
    # A duplicate asked as early fails with it, without a request of its own...
    with pytest.raises(CancelFailedError, match="failed for good after 3"):
        _step(store, client, owner="task-b")
    assert client.calls == 3
    # ...but a cancel asked later tries again, with a fresh budget.
    later = _step(store, client, owner="task-c", asked_at=ASKED + 100, now=ASKED + 101)
    assert later.attempts == 1  # type: ignore[union-attr]


def test_after_an_unconfirmed_answer_the_next_attempt_is_a_new_request() -> None:
    """The same Idempotency-Key would only get the unconfirmed answer replayed."""
    store = MemoryStore()
    already = CancelResult("b1", "cancelled", "already_finished", "Batch was already cancelled")
    client = StubClient([CancelNotConfirmedError("still processing", status=200), already])
    assert isinstance(_step(store, client), RetryLater)
    result = _step(store, client)
    # The batch still ran at the unconfirmed answer: that cancel is what stopped it.
    assert isinstance(result, OutcomeRecord)
    assert (result.outcome, result.attempts) == ("cancelled", 2)
    assert client.keys[0] is None  # the batch's own key
    assert client.keys[1] is not None and client.keys[1].startswith("pictify-tasks-cancel-")


def test_after_an_unconfirmed_answer_a_failed_attempt_does_not_bring_the_own_key_back() -> None:
    """Unconfirmed, then a 503: the next attempt is still a new request (no replay)."""
    store = MemoryStore()
    unconfirmed = CancelNotConfirmedError("still processing", status=200)
    client = StubClient([unconfirmed, ServerError("503", status=503), CANCELLED])
    assert isinstance(_step(store, client, max_attempts=None), RetryLater)
    assert isinstance(_step(store, client, max_attempts=None), RetryLater)
    result = _step(store, client, max_attempts=None)
    assert isinstance(result, OutcomeRecord) and result.attempts == 3
    assert client.keys[0] is None
    assert client.keys[1] is not None and client.keys[2] is not None
    assert len(set(client.keys)) == 3


def test_a_later_ask_never_reuses_an_earlier_asks_fresh_keys() -> None:
    """The API replays any key it saw within 24 h: a new series needs keys of its own."""
    store = MemoryStore()
    unconfirmed = CancelNotConfirmedError("still processing", status=200)
    client = StubClient([unconfirmed, unconfirmed, ServerError("503", status=503), CANCELLED])
    assert isinstance(_decision(store, client, max_attempts=2), RetryLater)
    assert isinstance(_decision(store, client, max_attempts=2), GiveUp)  # the first ask ends
    later = ASKED + 100
    asked_again = {"owner": "task-b", "asked_at": later, "now": later + 1, "max_attempts": 2}
    assert isinstance(_decision(store, client, **asked_again), RetryLater)
    assert _step(store, client, **asked_again).outcome == "cancelled"
    fresh = [key for key in client.keys if key is not None]
    assert len(fresh) == 3 and len(set(fresh)) == 3


def test_an_ordinary_retry_keeps_the_batchs_own_key() -> None:
    store = MemoryStore()
    client = StubClient([ServerError("503", status=503), CANCELLED])
    assert isinstance(_step(store, client), RetryLater)
    assert _step(store, client).outcome == "cancelled"  # type: ignore[union-attr]
    assert client.keys == [None, None]


def test_giving_up_says_how_many_attempts_were_made() -> None:
    """The task reports them from the decision, without reading the ledger again."""
    store = MemoryStore()
    client = StubClient([ServerError("a", status=503), ServerError("b", status=503)])
    assert isinstance(_decision(store, client, max_attempts=2), RetryLater)
    decision = _decision(store, client, max_attempts=2)
    assert isinstance(decision, GiveUp) and decision.attempts == 2
    assert str(decision.error) == "b"
    again = _decision(store, client, owner="task-b", max_attempts=2)
    assert isinstance(again, GiveUp) and again.attempts == 2
    assert isinstance(again.error, CancelFailedError)


def test_non_retryable_errors_fail_at_once() -> None:
    store = MemoryStore()
    client = StubClient([AuthenticationError("401", status=401)])
    with pytest.raises(AuthenticationError):
        _step(store, client)
    assert client.calls == 1
    failure = store.cancel_state("b1").failure
    assert failure is not None and failure.final is True


def test_an_unexpected_exception_gives_the_lease_back() -> None:
    store = MemoryStore()
    client = StubClient([KeyboardInterrupt(), CANCELLED])
    with pytest.raises(KeyboardInterrupt):
        _step(store, client)
    failure = store.cancel_state("b1").failure
    assert failure is not None and failure.error == "interrupted" and not failure.final
    assert _step(store, client, owner="task-b").outcome == "cancelled"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "cut", [SoftTimeLimitExceeded(), OSError("disk full"), KeyError("a bug")], ids=type
)
def test_a_call_cut_short_by_a_non_api_exception_is_a_failed_attempt(cut: Exception) -> None:
    """Retried within the deadline with the lease kept, then the final failure, like a timeout."""
    store = MemoryStore()
    client = StubClient([cut, cut])
    decision = _step(store, client, max_attempts=None, deadline=60)
    assert isinstance(decision, RetryLater)
    assert isinstance(decision.error, PictifyConnectionError)
    assert f"cut short by {type(cut).__name__}" in str(decision.error)
    failure = store.cancel_state("b1").failure
    assert failure is not None and not failure.final and failure.attempts == 1
    assert isinstance(_step(store, client, owner="task-b"), RetryLater)  # the lease is kept
    with pytest.raises(PictifyConnectionError):
        _step(store, client, max_attempts=None, deadline=60, now=ASKED + 61)
    failure = store.cancel_state("b1").failure
    assert failure is not None and failure.final and failure.attempts == 2


def test_retryable_errors_are_retried_until_the_deadline_not_a_count() -> None:
    """With no attempt cap, 20 failures in a row are still retried inside the deadline."""
    store = MemoryStore()
    client = StubClient([ServerError("503", status=503)] * 20 + [CANCELLED])
    for n in range(20):
        decision = _step(store, client, max_attempts=None, now=ASKED + 10 * n)
        assert isinstance(decision, RetryLater), n
    result = _step(store, client, max_attempts=None, now=ASKED + 200)
    assert isinstance(result, OutcomeRecord) and result.attempts == 21


def test_past_the_deadline_a_retryable_error_fails_for_good() -> None:
    store = MemoryStore()
    client = StubClient([ServerError("503", status=503)] * 2)
    assert isinstance(_step(store, client, max_attempts=None, deadline=60), RetryLater)
    with pytest.raises(ServerError):
        _step(store, client, max_attempts=None, deadline=60, now=ASKED + 61)
    failure = store.cancel_state("b1").failure
    assert failure is not None and failure.final and failure.attempts == 2


def test_a_wait_never_goes_past_the_deadline() -> None:
    store = MemoryStore()
    client = StubClient([ServerError("503", status=503)] * 3)
    for n in range(2):  # backoff ceilings 1 s, 2 s: nothing to clamp yet
        assert isinstance(_step(store, client, max_attempts=None, deadline=10), RetryLater), n
    decision = _step(store, client, max_attempts=None, deadline=10, now=ASKED + 9.5)
    assert isinstance(decision, RetryLater) and decision.countdown <= 0.5


def test_a_server_wait_past_the_deadline_ends_the_cancel_now() -> None:
    store = MemoryStore()
    client = StubClient([RateLimitError("429", status=429, retry_after=4.0)])
    with pytest.raises(RateLimitError):
        _step(store, client, max_attempts=None, deadline=10, now=ASKED + 8)


class DownStore(MemoryStore):
    """A store whose every call fails as an unreachable Redis would."""

    def begin_cancel(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise StateStoreError("state store: ConnectionError: refused")


def test_an_unreachable_store_is_retried_not_fatal() -> None:
    client = StubClient([CANCELLED])
    decision = _step(DownStore(), client, max_attempts=1)
    assert isinstance(decision, RetryLater) and isinstance(decision.error, StateStoreError)
    assert client.calls == 0
    with pytest.raises(StateStoreError):
        _step(DownStore(), client, deadline=60, now=ASKED + 61)


class StoreFailsAfterThePost(MemoryStore):
    def finish_cancel(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise StateStoreError("state store: TimeoutError")


def test_a_store_failure_after_the_post_retries_the_post() -> None:
    """The next step sends the same cancel again (the API replays it, same key)."""
    store = StoreFailsAfterThePost()
    client = StubClient([CANCELLED, CANCELLED])
    decision = _step(store, client)
    assert isinstance(decision, RetryLater) and isinstance(decision.error, StateStoreError)
    assert client.calls == 1


def test_a_store_failure_after_the_post_with_no_budget_left_returns_the_apis_answer() -> None:
    """The batch was cancelled: that is the result, not a failure, though the ledger missed it."""
    client = StubClient([CANCELLED])
    decision = _step(StoreFailsAfterThePost(), client, deadline=60, now=ASKED + 60)
    assert isinstance(decision, OutcomeRecord)
    assert (decision.outcome, decision.attempts) == ("cancelled", 1)


def test_a_cancel_waits_for_a_token_without_spending_an_attempt() -> None:
    store, client, limiter = MemoryStore(), StubClient([CANCELLED]), Limiter(wait=1.5, waits=2)
    context = _context(store, client, limiter=limiter)
    for _ in range(2):
        decision = cancel_step("b1", "task-a", context)
        assert decision == RetryLater(countdown=1.5)
    # a duplicate meanwhile waits for the lease, and asks for no token
    assert isinstance(cancel_step("b1", "task-b", context), RetryLater)
    result = cancel_step("b1", "task-a", context)
    assert isinstance(result, OutcomeRecord) and result.attempts == 1
    assert client.calls == 1
    assert limiter.asks == [Priority.CANCEL] * 3


def _limited_step(store: StateStore, client: StubClient, limiter: object, now: float) -> object:
    context = _context(
        store, client, policy=RetryPolicy(deadline=60.0), limiter=limiter, now=lambda: now
    )
    return _unwrap(cancel_step("b1", "task-a", context))


def test_a_limiter_whose_store_is_down_is_retried_within_the_deadline() -> None:
    store, client = MemoryStore(), StubClient([CANCELLED])
    decision = _limited_step(store, client, Limiter(down=1), ASKED + 1)
    assert isinstance(decision, RetryLater) and isinstance(decision.error, StateStoreError)
    with pytest.raises(StateStoreError):
        _limited_step(store, client, Limiter(down=1), ASKED + 61)
    assert client.calls == 0


def test_giving_up_on_a_limiter_that_is_down_says_the_attempts_made_before() -> None:
    store, client = MemoryStore(), StubClient([ServerError("503", status=503)])
    assert isinstance(_step(store, client), RetryLater)
    late = _context(store, client, policy=RetryPolicy(deadline=60.0), now=lambda: ASKED + 61)
    decision = cancel_step("b1", "task-a", dataclasses.replace(late, limiter=Limiter(down=1)))
    assert isinstance(decision, GiveUp) and isinstance(decision.error, StateStoreError)
    assert decision.attempts == 1


def test_a_token_that_comes_after_the_deadline_is_the_final_failure() -> None:
    store, client = MemoryStore(), StubClient([CANCELLED])
    # 1.5 s to the token with 2 s left: wait for it.
    assert _limited_step(store, client, Limiter(wait=1.5, waits=1), ASKED + 58) == RetryLater(1.5)
    with pytest.raises(NoTokenInTimeError, match="no request token before the deadline"):
        _limited_step(store, client, Limiter(wait=1.5, waits=1), ASKED + 59)
    failure = store.cancel_state("b1").failure
    assert failure is not None and failure.final and failure.attempts == 0
    assert client.calls == 0
    with pytest.raises(CancelFailedError):  # a duplicate asked as early fails with it
        _step(store, client, owner="task-b", now=ASKED + 59.5)


def test_a_token_wait_keeps_the_lease_for_the_whole_wait() -> None:
    """keep_lease: a duplicate asking during a wait longer than the lease waits too."""
    clock = [0.0]
    store, client = MemoryStore(clock=lambda: clock[0]), StubClient([CANCELLED])
    context = _context(store, client, lease_seconds=5, limiter=Limiter(wait=60.0, waits=1))
    assert cancel_step("b1", "task-a", context) == RetryLater(countdown=60.0)
    clock[0] = 30.0  # the 5 s lease alone would have ended long ago
    duplicate = store.begin_cancel("b1", "task-b", 5, ASKED)
    assert not duplicate.acquired and 30 < duplicate.lease_remaining <= 35
