"""The shared rate limit in real workers: two worker processes, one API key, one budget."""

from __future__ import annotations

import collections

import pytest

from pictify_tasks.limiter import bucket_for
from tests.workers import Setup, gather
from tests.workflows import eventually

pytestmark = pytest.mark.worker

#: No attempt cap: a cancel that waits for a token must never run out of attempts.
WORKER_ENV = {"PICTIFY_CANCEL_MAX_ATTEMPTS": ""}
CANCELS = 60
LIMIT = 20  # requests per one-second window of the emulator


@pytest.fixture(scope="module")
def setup(redis_setup: Setup) -> Setup:
    return redis_setup


def limiter_key(setup: Setup) -> str:
    prefix, api_key = setup.env["PICTIFY_STATE_PREFIX"], setup.env["PICTIFY_API_KEY"]
    return f"{prefix}:{{rl:{bucket_for(api_key)}}}:limiter"


def test_two_workers_share_the_apis_budget_and_never_meet_a_429(setup: Setup) -> None:
    emulator = setup.emulator
    emulator.set_rate_limit(LIMIT, 1.0)
    batches = [emulator.create_batch() for _ in range(CANCELS)]
    with setup.another_worker():
        outcomes = gather([setup.cancel(b) for b in batches], timeout=120)
    assert [o["outcome"] if isinstance(o, dict) else o for o in outcomes] == ["cancelled"] * len(
        batches
    )
    assert {o["attempts"] for o in outcomes} == {1}  # no request was refused and retried
    answered = [r for b in batches for r in emulator.cancel_requests(b)]
    assert [r.status for r in answered] == [200] * len(batches)
    per_second = collections.Counter(int(r.time) for r in answered)
    assert max(per_second.values()) <= LIMIT
    assert len(per_second) >= CANCELS // LIMIT  # it took several windows: the limit held
    # the API's own window was learnt from its headers, by hash of the key
    state = setup.store.redis.hgetall(limiter_key(setup))
    assert int(float(state[b"api_limit"])) == LIMIT


def test_a_429_holds_off_every_worker_until_the_reset(setup: Setup) -> None:
    emulator = setup.emulator
    emulator.set_rate_limit(None)
    first = emulator.create_batch()
    emulator.inject(status=429, headers={"Retry-After": "2"}, times=1, path_contains=first)
    with setup.another_worker():
        refused = setup.cancel(first)
        redis = setup.store.redis
        key = limiter_key(setup)
        assert eventually(lambda: float(redis.hget(key, "hold") or 0) > 0), "no hold was shared"
        hold = float(redis.hget(key, "hold") or 0) / 1000.0
        later = [emulator.create_batch() for _ in range(8)]
        outcomes = gather([setup.cancel(b) for b in later] + [refused], timeout=60)
    assert all(isinstance(o, dict) and o["outcome"] == "cancelled" for o in outcomes), outcomes
    for batch_id in later:
        [request] = emulator.cancel_requests(batch_id)
        assert request.time >= hold, "a worker sent a request during the hold"
    statuses = [r.status for r in emulator.cancel_requests(first)]
    assert statuses == [429, 200]
