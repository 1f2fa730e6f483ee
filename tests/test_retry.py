from __future__ import annotations

import pytest

from pictify_tasks import (
    AuthenticationError,
    PictifyConnectionError,
    QuotaExceededError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)


def test_retries_only_retryable_errors_and_only_within_the_budget() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(ServerError("x"), 1)
    assert policy.should_retry(PictifyConnectionError("x"), 2)
    assert policy.should_retry(RateLimitError("x"), 2)
    assert not policy.should_retry(ServerError("x"), 3)
    assert not policy.should_retry(AuthenticationError("x"), 1)
    assert not policy.should_retry(QuotaExceededError("x"), 1)
    assert not policy.should_retry(ValueError("x"), 1)


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_base=0.5, backoff_max=3.0)
    assert [policy.backoff_ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff_ceiling(10_000) == 3.0


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
