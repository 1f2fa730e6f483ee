from __future__ import annotations

import pytest
from celery import Celery

from pictify_tasks import (
    AuthenticationError,
    PictifyConnectionError,
    QuotaExceededError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from pictify_tasks._runtime import runtime_for
from pictify_tasks.store import StateStoreError


def test_retries_only_retryable_errors_and_only_within_the_budget() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(ServerError("x"), 1)
    assert policy.should_retry(PictifyConnectionError("x"), 2)
    assert policy.should_retry(RateLimitError("x"), 2)
    assert not policy.should_retry(ServerError("x"), 3)
    assert not policy.should_retry(AuthenticationError("x"), 1)
    assert not policy.should_retry(QuotaExceededError("x"), 1)
    assert not policy.should_retry(ValueError("x"), 1)


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=100.0)
    assert policy.countdown(3, rand=lambda: 0.0) == 0.0
    assert policy.countdown(3, rand=lambda: 0.5) == 2.0
    assert policy.countdown(3, rand=lambda: 0.999) == pytest.approx(3.996)


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=2.0)
    limited = RateLimitError("slow down", retry_after=30.0)
    assert policy.countdown(1, limited, rand=lambda: 0.9) == 30.0
    small = RateLimitError("slow down", retry_after=0.1)
    assert policy.countdown(2, small, rand=lambda: 0.9) == pytest.approx(1.8)


def test_policy_is_an_immutable_value_and_rejects_nonsense() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_max=0)
    for bad in (
        {"max_attempts": True},
        {"deadline": 0},
        {"deadline": float("inf")},
        {"retry_after_max": -1},
        {"retry_after_max": float("nan")},
        {"backoff_base": float("inf")},
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_the_defaults_bound_a_cancel_by_time_not_by_attempts() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff_max) == (None, 60.0)
    assert (policy.deadline, policy.retry_after_max) == (3600.0, 300.0)
    assert policy.should_retry(ServerError("x"), 1_000)


def test_the_servers_wait_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=2.0, retry_after_max=60.0)
    assert policy.countdown(1, RateLimitError("x", retry_after=1e20), rand=lambda: 0.5) == 60.0
    # A value the parser would never give still does no harm.
    assert policy.countdown(1, RateLimitError("x", retry_after=float("inf"))) <= 60.0
    assert policy.countdown(1, RateLimitError("x", retry_after=float("nan"))) <= 2.0


def test_should_retry_stops_at_the_deadline() -> None:
    policy = RetryPolicy(deadline=100.0)
    assert policy.should_retry(ServerError("x"), 3, elapsed=99.0)
    assert not policy.should_retry(ServerError("x"), 3, elapsed=100.0)
    assert not policy.should_retry(ServerError("x"), 3, elapsed=250.0)


def test_next_wait_is_none_when_there_must_be_no_next_attempt() -> None:
    policy = RetryPolicy(max_attempts=4, deadline=100.0, retry_after_max=50.0)
    assert policy.next_wait(AuthenticationError("x"), 1, 0.0) is None
    assert policy.next_wait(QuotaExceededError("x"), 1, 0.0) is None
    assert policy.next_wait(ValueError("x"), 1, 0.0) is None
    assert policy.next_wait(ServerError("x"), 4, 0.0) is None  # max_attempts reached
    assert policy.next_wait(ServerError("x"), 2, 100.0) is None  # deadline reached
    # The server asks for 40 s (under the cap) with 30 s left: no attempt could follow.
    assert policy.next_wait(RateLimitError("x", retry_after=40.0), 1, 70.0) is None
    # Asked for 1000 s, capped at 50 s, with 60 s left: wait the 50 s.
    assert policy.next_wait(RateLimitError("x", retry_after=1000.0), 1, 40.0) == 50.0


def test_next_wait_is_the_countdown_clamped_to_the_deadline() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=60.0, deadline=100.0)
    assert policy.next_wait(ServerError("x"), 3, 0.0, rand=lambda: 0.5) == 2.0
    assert policy.next_wait(ServerError("x"), 10, 0.0, rand=lambda: 0.999) == pytest.approx(59.94)
    # 60 s of backoff with 5 s left: the last attempt goes out at the deadline.
    assert policy.next_wait(ServerError("x"), 10, 95.0, rand=lambda: 0.999) == pytest.approx(5.0)
    limited = RateLimitError("x", retry_after=5.0)
    assert policy.next_wait(limited, 1, 95.0, rand=lambda: 0.0) == 5.0
    assert policy.next_wait(PictifyConnectionError("x"), 1, 0.0, rand=lambda: 0.0) == 0.0


def test_next_wait_without_max_attempts_keeps_going_until_the_deadline() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=60.0, deadline=3600.0)
    elapsed, attempt = 0.0, 1
    while (
        wait := policy.next_wait(ServerError("x"), attempt, elapsed, rand=lambda: 1.0)
    ) is not None:
        elapsed += wait
        attempt += 1
    assert elapsed == 3600.0
    assert 60 < attempt < 70  # about one attempt a minute once backed off


def test_the_current_runtime_builds_a_policy_from_the_settings() -> None:
    app = Celery("retry-runtime", set_as_current=False)
    app.conf.update(pictify_state_url="memory://", pictify_retry_backoff_max=15)
    policy = runtime_for(app).policy
    assert (policy.max_attempts, policy.backoff_base, policy.backoff_max) == (None, 1.0, 15.0)
    app.conf.update(pictify_cancel_max_attempts=3)
    runtime_for(app).reset()
    assert runtime_for(app).policy.max_attempts == 3


def test_a_state_store_in_trouble_is_bounded_by_the_deadline_not_the_attempt_cap() -> None:
    policy = RetryPolicy(max_attempts=2, deadline=100.0)
    assert policy.should_retry(StateStoreError("down"), 50, elapsed=99.0)
    assert not policy.should_retry(StateStoreError("down"), 1, elapsed=100.0)
