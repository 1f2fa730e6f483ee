"""The shared rate limiter's behaviour, the same in process memory, fakeredis and real Redis.

Time is a fake clock (Unix seconds) handed to the limiter, so windows turn
when a test says so: no sleeps, no timing. Two limiters made from one store
stand for two worker processes.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pictify_tasks.limiter import (
    LOAN_MS,
    LOAN_SIZE,
    SLACK,
    LimiterConfig,
    LimiterState,
    MemoryLimiter,
    Observation,
    StoreLimiter,
    bucket_for,
)
from pictify_tasks.ratelimit import Priority, Rate, RateLimitInfo
from pictify_tasks.store import RedisStore, StateStore, StateStoreError
from pictify_tasks.testing.redis_server import free_port

T0 = 1_700_000_000.0  # a whole second, so clock windows start here
CANCEL, START, POLL = Priority.CANCEL, Priority.START, Priority.POLL


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(
    store: StateStore, clock: Clock, rate: Rate | None = None, key: str = "pk_test_a"
) -> StoreLimiter:
    return store.rate_limiter(bucket_for(key), LimiterConfig.from_rate(rate, 300.0, clock))


def told(
    store: StateStore, limit: int, remaining: int, reset: float, now: float = T0
) -> tuple[Clock, StoreLimiter]:
    """A clock at ``now`` and a limiter that has heard one answer with these headers."""
    clock = Clock(now)
    worker = limiter(store, clock)
    worker.observe(200, headers(limit, remaining, reset))
    return clock, worker


def granted(limiter: StoreLimiter, priority: Priority, times: int) -> int:
    """How many of ``times`` asks got a token at once."""
    return sum(limiter.acquire(priority) == 0.0 for _ in range(times))


def headers(limit: int, remaining: int, reset: float, retry_after: float | None = None) -> Any:
    return RateLimitInfo(limit, remaining, int(reset), retry_after)


def close_to(value: float, expected: float) -> bool:
    return abs(value - expected) < 0.005


# -- the configured rate --------------------------------------------------------------------


def test_without_a_rate_or_headers_every_request_goes(store: StateStore) -> None:
    clock = Clock()
    assert granted(limiter(store, clock), CANCEL, 500) == 500


def test_a_configured_rate_is_shared_by_every_process(store: StateStore) -> None:
    clock = Clock(T0 + 0.25)
    first, second = limiter(store, clock, Rate(4, 1)), limiter(store, clock, Rate(4, 1))
    assert granted(first, CANCEL, 3) == 3
    assert granted(second, CANCEL, 3) == 1  # the budget is the key's, not the process's
    wait = second.acquire(CANCEL)
    assert close_to(wait, 0.75 + SLACK)  # the window on the clock turns at T0 + 1
    clock.now = T0 + 1.0
    assert granted(first, CANCEL, 4) == 4


def test_each_api_key_has_its_own_budget(store: StateStore) -> None:
    clock = Clock()
    assert granted(limiter(store, clock, Rate(2, 60), key="pk_a"), CANCEL, 5) == 2
    assert granted(limiter(store, clock, Rate(2, 60), key="pk_b"), CANCEL, 5) == 2


# -- the API's headers -------------------------------------------------------------------


def test_headers_set_the_budget_and_the_window_end(store: StateStore) -> None:
    clock, worker = told(store, limit=5, remaining=3, reset=T0 + 2, now=T0 + 0.5)
    other = limiter(store, clock)
    assert granted(worker, CANCEL, 1) == 1  # the answer is heard with this ask
    # the API counted 2, this ask made 3: two left in the API's window
    assert granted(other, CANCEL, 5) == 2
    assert close_to(other.acquire(CANCEL), 1.5 + SLACK)  # until the Reset, not a guess
    clock.now = T0 + 2.0
    assert granted(other, CANCEL, 6) == 5


def test_the_stricter_of_the_setting_and_the_headers_wins(store: StateStore) -> None:
    clock = Clock(T0)
    loose_setting = limiter(store, clock, Rate(10, 1), key="pk_loose")
    loose_setting.observe(200, headers(limit=3, remaining=3, reset=T0 + 1))
    loose_setting.acquire(CANCEL)
    assert granted(loose_setting, CANCEL, 10) == 2
    strict_setting = limiter(store, clock, Rate(2, 1), key="pk_strict")
    strict_setting.observe(200, headers(limit=100, remaining=100, reset=T0 + 1))
    assert granted(strict_setting, CANCEL, 10) == 2


def test_someone_else_spending_the_key_leaves_less(store: StateStore) -> None:
    _, worker = told(store, limit=10, remaining=9, reset=T0 + 1)
    worker.acquire(CANCEL)
    worker.observe(200, headers(limit=10, remaining=2, reset=T0 + 1))  # 8 used, not 1
    assert granted(worker, CANCEL, 10) == 2


def test_the_api_window_is_learnt_from_the_resets_and_again_when_it_shrinks(
    store: StateStore,
) -> None:
    clock, worker = told(store, limit=2, remaining=2, reset=T0 + 60)
    assert granted(worker, CANCEL, 2) == 2
    assert [round(worker.acquire(CANCEL) - SLACK) for _ in range(3)] == [60, 60, 120]
    clock.now = T0 + 200  # the plan changed: the API now counts per second
    worker.observe(200, headers(limit=2, remaining=2, reset=T0 + 201))
    assert granted(worker, CANCEL, 2) == 2
    assert [round(worker.acquire(CANCEL) - SLACK, 3) for _ in range(3)] == [1.0, 1.0, 2.0]


def test_an_answer_from_a_new_api_window_counts_that_window_afresh(store: StateStore) -> None:
    clock, worker = told(store, limit=2, remaining=2, reset=T0 + 1)
    assert granted(worker, CANCEL, 2) == 2
    clock.now = T0 + 1.5  # another process's request opened the next window
    worker.observe(200, headers(limit=2, remaining=1, reset=T0 + 2))
    assert granted(worker, CANCEL, 2) == 1


def test_a_429_holds_every_process_off_until_the_reset(store: StateStore) -> None:
    clock = Clock(T0 + 0.2)
    got_it, other = limiter(store, clock), limiter(store, clock)
    got_it.observe(429, headers(limit=50, remaining=0, reset=T0 + 3, retry_after=1))
    # heard at once, without another ask from the process that got the 429
    assert close_to(other.acquire(CANCEL), 2.8 + SLACK)
    clock.now = T0 + 3.0
    assert other.acquire(CANCEL) == 0.0


def test_a_429_from_a_proxy_without_rate_headers_holds_for_its_retry_after(
    store: StateStore,
) -> None:
    clock, worker = told(store, limit=100, remaining=99, reset=T0 + 60)
    worker.observe(429, RateLimitInfo(None, None, None, 2.0))
    assert close_to(worker.acquire(CANCEL), 2 + SLACK)
    clock.now = T0 + 2  # the API's own window still has room: no wait for its reset
    assert worker.acquire(CANCEL) == 0.0


def test_a_429_hold_is_capped(store: StateStore) -> None:
    clock = Clock(T0)
    worker = limiter(store, clock)
    worker.observe(429, headers(limit=5, remaining=0, reset=T0 + 1, retry_after=10_000))
    assert close_to(worker.acquire(CANCEL), 300 + SLACK)


def test_a_token_at_the_very_end_of_an_api_window_counts_in_the_next(store: StateStore) -> None:
    clock, worker = told(store, limit=4, remaining=4, reset=T0 + 1)
    clock.now = T0 + 0.99  # its request may reach the API after the window turned
    assert granted(worker, CANCEL, 1) == 1
    clock.now = T0 + 1.0
    assert granted(worker, CANCEL, 4) == 3


# -- priorities ------------------------------------------------------------------------


def test_polls_and_starts_leave_a_share_of_every_window_to_cancels(store: StateStore) -> None:
    clock = Clock(T0)
    worker = limiter(store, clock, Rate(10, 1))
    assert granted(worker, POLL, 10) == 8
    assert granted(worker, START, 10) == 1
    assert granted(worker, CANCEL, 10) == 1


def test_while_cancels_wait_polls_and_starts_wait_behind_them(store: StateStore) -> None:
    clock = Clock(T0)
    worker = limiter(store, clock, Rate(10, 1))
    assert granted(worker, CANCEL, 10) == 10
    assert worker.acquire(CANCEL) > 0  # a cancel is waiting for the next window
    clock.now = T0 + 1.0
    # the new window has room, but the waiting cancel comes first
    assert worker.acquire(POLL) > 0
    assert worker.acquire(START) > 0
    assert worker.acquire(CANCEL) == 0.0


def test_a_backlog_comes_back_a_window_at_a_time(store: StateStore) -> None:
    clock = Clock(T0)
    worker = limiter(store, clock, Rate(5, 1))
    assert granted(worker, CANCEL, 5) == 5
    waits = [round(worker.acquire(CANCEL) - SLACK, 3) for _ in range(12)]
    assert waits == [1.0] * 5 + [2.0] * 5 + [3.0] * 2


def test_polls_queue_after_the_cancels(store: StateStore) -> None:
    clock = Clock(T0)
    worker = limiter(store, clock, Rate(5, 1))
    assert granted(worker, CANCEL, 5) == 5
    cancel_waits = [worker.acquire(CANCEL) for _ in range(7)]  # 2 s of cancels waiting
    assert max(cancel_waits) < 2.5
    assert worker.acquire(POLL) >= max(cancel_waits) - SLACK


# -- round trips ---------------------------------------------------------------------


class CountingLimiter(MemoryLimiter):
    """Counts the store calls: what a round trip to Redis is for the Redis limiter."""

    def __init__(self, rate: Rate | None = None, clock: Clock | None = None) -> None:
        config = LimiterConfig.from_rate(rate, 300.0, clock or Clock())
        super().__init__(LimiterState(), threading.Lock(), config)
        self.runs: list[tuple[int | None, int | None]] = []

    def _run(
        self, priority: int | None, heard: Observation | None, now_ms: float | None, want: int = 1
    ) -> float:
        self.runs.append((priority, None if heard is None else heard.status))
        return super()._run(priority, heard, now_ms, want)


def test_one_store_call_per_request_and_answers_ride_along() -> None:
    worker = CountingLimiter()
    worker.observe(200, headers(limit=9, remaining=8, reset=T0 + 1))  # the first: at once
    worker.acquire(CANCEL)  # a window of 9 has no room to lend 8
    worker.observe(200, headers(limit=9, remaining=7, reset=T0 + 1))  # kept for the next ask
    worker.acquire(POLL)
    worker.observe(429, headers(limit=9, remaining=0, reset=T0 + 1))  # every worker must hear
    assert worker.runs == [(None, 200), (0, None), (2, 200), (None, 429)]


# -- loans --------------------------------------------------------------------------------


def test_a_cancel_borrows_a_block_of_tokens_counted_at_once(store: StateStore) -> None:
    clock = Clock()
    first, second = limiter(store, clock, Rate(20, 1)), limiter(store, clock, Rate(20, 1))
    assert granted(first, CANCEL, LOAN_SIZE) == LOAN_SIZE  # one ask: a loan of 8, half of 20 free
    # The other process finds 8 of the 20 spent already, and no room left to lend.
    assert granted(second, CANCEL, 20) == 20 - LOAN_SIZE
    assert first.acquire(CANCEL) > 0  # its loan spent: it asks, and the window is full


def test_one_store_call_per_loan_and_none_for_polls_or_starts() -> None:
    worker = CountingLimiter(Rate(1000, 60))
    for _ in range(3 * LOAN_SIZE):
        assert worker.acquire(CANCEL) == 0.0
    for _ in range(2):
        worker.acquire(POLL)
        worker.acquire(START)
    assert worker.runs == [(0, None)] * 3 + [(2, None), (1, None)] * 2


def test_a_loan_ends_after_its_time_and_never_outlives_its_window() -> None:
    clock = Clock(T0 + 0.5)
    worker = CountingLimiter(Rate(1000, 1), clock)
    worker.acquire(CANCEL)
    clock.now += LOAN_MS / 1000.0  # the loan's time is up: the next cancel asks
    worker.acquire(CANCEL)
    clock.now = T0 + 0.995  # 5 ms before the window turns: a single token, no loan
    worker.acquire(CANCEL)
    worker.acquire(CANCEL)
    assert worker.runs == [(0, None)] * 4


def test_a_429_or_a_nearly_spent_window_ends_the_loan(store: StateStore) -> None:
    clock = Clock()
    worker = limiter(store, clock)
    worker.acquire(CANCEL)  # a loan: nothing known limits the key
    worker.observe(429, headers(limit=100, remaining=0, reset=T0 + 2))
    assert close_to(worker.acquire(CANCEL), 2.0 + SLACK)  # held off like everyone


def test_a_nearly_spent_window_ends_the_loan() -> None:
    worker = CountingLimiter()
    worker.acquire(CANCEL)  # a loan: nothing known limits the key
    worker.observe(200, headers(limit=100, remaining=2 * LOAN_SIZE - 1, reset=T0 + 1))
    worker.acquire(CANCEL)  # asks the store, not the loan
    assert worker.runs == [(0, None), (None, 200), (0, None)]


class LentBefore429(CountingLimiter):
    """The store lends, then another thread's 429 is heard before the loan is kept."""

    def _run(
        self, priority: int | None, heard: Observation | None, now_ms: float | None, want: int = 1
    ) -> float:
        wait_ms = super()._run(priority, heard, now_ms, want)
        if priority is not None and len(self.runs) == 1:
            self.observe(429, headers(limit=100, remaining=0, reset=T0 + 2))
        return wait_ms


def test_a_loan_lent_before_a_429_was_heard_is_not_kept() -> None:
    worker = LentBefore429()
    assert worker.acquire(CANCEL) == 0.0  # lent before the 429: this one token goes
    assert close_to(worker.acquire(CANCEL), 2.0 + SLACK)  # the rest of the loan does not
    assert worker.runs == [(0, None), (None, 429), (0, None)]


def test_no_loan_while_cancels_are_queued(store: StateStore) -> None:
    clock = Clock()
    worker = limiter(store, clock, Rate(40, 1))
    assert granted(worker, CANCEL, 60) == 40  # 20 booked places in the next window
    clock.now = T0 + 1
    behind, third = limiter(store, clock, Rate(40, 1)), limiter(store, clock, Rate(40, 1))
    assert behind.acquire(CANCEL) == 0.0  # one token, not a loan: others are queued
    assert granted(third, CANCEL, 40) == 39


# -- where it lives -----------------------------------------------------------------------


def test_redis_holds_one_key_named_by_a_hash_of_the_api_key(
    redis_url: str, key_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        store = RedisStore(client, prefix=key_prefix)
        api_key = "pk_live_secret_123"
        limiter(store, Clock(), Rate(5, 1), key=api_key).acquire(CANCEL)
        keys = [k.decode() for k in client.scan_iter(f"{key_prefix}:*")]
        assert keys == [f"{key_prefix}:{{rl:{bucket_for(api_key)}}}:limiter"]
        assert api_key not in keys[0]
        assert 0 < client.pttl(keys[0]) <= 86_400_000
    finally:
        for key in client.scan_iter(f"{key_prefix}:*"):
            client.delete(key)
        client.close()


def test_a_store_that_does_not_answer_is_a_state_store_error() -> None:
    """Transient, so the task retries it within its deadline; never a raw Redis error."""
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client)
    worker = limiter(store, Clock(), Rate(5, 1))
    with pytest.raises(StateStoreError, match="ConnectionError"):
        worker.acquire(CANCEL)
    worker.observe(429, headers(limit=5, remaining=0, reset=T0 + 1))  # logged, not raised
