"""``pictify.cancel_batch`` in a real ``celery worker`` process, on Redis and on RabbitMQ,
against the emulator over HTTP."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.fakes import cancelled_result
from tests.workers import Setup, gather

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _clean_faults(setup: Setup) -> None:
    setup.emulator.clear_faults()


def _cancel_path(batch_id: str) -> str:
    return f"/templates/batch/{batch_id}/cancel"


def test_cancels_a_running_batch(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch(total_items=10)
    result = setup.cancel(batch_id).get(timeout=30)
    assert result == cancelled_result(batch_id)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"
    assert len(setup.emulator.cancel_requests(batch_id)) == 1


def test_503_503_200_is_one_cancel_in_three_requests(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    setup.emulator.inject(status=503, times=2, path_contains=_cancel_path(batch_id))
    result = setup.cancel(batch_id).get(timeout=30)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 3)
    requests = setup.emulator.cancel_requests(batch_id)
    assert [r.status for r in requests] == [503, 503, 200]
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 1
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_429_waits_at_least_retry_after(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    setup.emulator.inject(
        status=429, headers={"Retry-After": "1"}, times=1, path_contains=_cancel_path(batch_id)
    )
    result = setup.cancel(batch_id).get(timeout=30)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 2)
    first, second = setup.emulator.cancel_requests(batch_id)
    assert (first.status, second.status) == (429, 200)
    gap = second.monotonic - first.monotonic
    print(f"[{setup.broker}] 429 Retry-After: 1 -> next request after {gap:.3f}s")
    assert gap >= 0.95  # the floor holds (a lower bound, not a speed claim)


def test_unknown_batch_is_not_found_without_retry(setup: Setup) -> None:
    batch_id = f"batch_missing_{uuid.uuid4().hex[:8]}"
    result = setup.cancel(batch_id).get(timeout=30)
    assert (result["outcome"], result["attempts"], result["status"]) == ("not_found", 1, None)
    assert len(setup.emulator.cancel_requests(batch_id)) == 1


def test_finished_batch_is_already_finished(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch(status="completed")
    result = setup.cancel(batch_id).get(timeout=30)
    assert (result["outcome"], result["status"]) == ("already_finished", "completed")
    assert setup.emulator.batch(batch_id)["status"] == "completed"


def test_401_fails_at_once_and_the_ledger_says_so(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    setup.emulator.inject(status=401, times=1, path_contains=_cancel_path(batch_id))
    async_result = setup.cancel(batch_id)
    [outcome] = gather([async_result], timeout=30)
    assert async_result.state == "FAILURE"
    assert type(outcome).__name__ == "AuthenticationError"
    assert "HTTP 401" in str(outcome)
    assert len(setup.emulator.cancel_requests(batch_id)) == 1
    state = setup.store.cancel_state(batch_id)
    assert state.failure is not None and state.failure.final and state.failure.status == 401
    assert state.outcome is None
    # Not final: asking again (the API now answers normally) cancels it.
    assert setup.cancel(batch_id).get(timeout=30)["outcome"] == "cancelled"


def test_fifty_duplicate_cancels_make_exactly_one_request(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    # Hold the first request long enough for every duplicate to be running.
    setup.emulator.inject(delay=1.0, times=1, path_contains=_cancel_path(batch_id))
    results = gather([setup.cancel(batch_id) for _ in range(50)], timeout=90)
    assert len(setup.emulator.cancel_requests(batch_id)) == 1
    assert all(isinstance(r, dict) for r in results), results
    assert {r["outcome"] for r in results} == {"cancelled"}
    # one task sent the cancel; the 49 others read its outcome from the ledger
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 49
    assert all({**r, "replayed": False} == {**results[0], "replayed": False} for r in results)
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_a_lost_response_is_retried_and_stays_one_cancel(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    setup.emulator.inject(drop_after_handling=True, times=1, path_contains=_cancel_path(batch_id))
    result = setup.cancel(batch_id).get(timeout=30)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 2)
    second = setup.emulator.cancel_requests(batch_id)[1]
    assert second.replayed
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_exhausted_retries_fail_with_the_last_error(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    setup.emulator.inject(status=502, times=4, path_contains=_cancel_path(batch_id))
    async_result = setup.cancel(batch_id)
    [outcome] = gather([async_result], timeout=30)
    assert type(outcome).__name__ == "ServerError" and "HTTP 502" in str(outcome)
    assert len(setup.emulator.cancel_requests(batch_id)) == 4
    failure = setup.store.cancel_state(batch_id).failure
    assert failure is not None and (failure.attempts, failure.final) == (4, True)


def test_a_worker_killed_mid_call_leaves_the_message_to_be_redelivered(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    # The first request hangs long enough for us to kill the process sending it.
    setup.emulator.inject(delay=3.0, times=1, path_contains=_cancel_path(batch_id))
    async_result = setup.cancel(batch_id)
    setup.emulator.wait_for_requests(1, path_contains=_cancel_path(batch_id), timeout=30)
    killed = _kill_pool_children(setup.worker.process.pid)
    assert killed, "the worker had no pool processes to kill"
    result = async_result.get(timeout=60)
    assert result["outcome"] == "cancelled"
    # The redelivered message went on with the same lease and sent the cancel
    # again (an attempt killed mid-call records nothing, so it is not counted).
    assert len(setup.emulator.cancel_requests(batch_id)) == 2
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def _kill_pool_children(pid: int) -> list[int]:
    """SIGKILL the prefork pool's processes (the main process replaces them)."""
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        children = [int(child) for child in handle.read().split()]
    for child in children:
        os.kill(child, signal.SIGKILL)
    return children
