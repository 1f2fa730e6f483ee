"""Cancels that used to be lost to a broken API, now kept: each fault on a real worker.

Each test injects a fault with the emulator and checks what a real ``celery
worker`` makes of it. The worker here has a short time budget (6 s) and no
attempt cap, so a budget is a time, not a count. Redis is the broker: none of
this depends on it (the recovery cases run on both brokers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pictify_tasks.testing import PictifyEmulator
from tests.workers import Setup, gather

pytestmark = pytest.mark.worker

DEADLINE = 6.0


WORKER_ENV = {
    "PICTIFY_CANCEL_DEADLINE": str(DEADLINE),
    "PICTIFY_CANCEL_MAX_ATTEMPTS": "",
    "PICTIFY_RETRY_AFTER_MAX": "1",
    "PICTIFY_TIMEOUT": "1",
}


@pytest.fixture(scope="module")
def setup(redis_setup: Setup) -> Setup:
    return redis_setup


@pytest.fixture(autouse=True)
def _clean_faults(setup: Setup) -> Iterator[None]:
    setup.emulator.clear_faults()
    yield
    setup.emulator.clear_faults()


def cancel_path(batch_id: str) -> str:
    return f"/templates/batch/{batch_id}/cancel"


def inject(emulator: PictifyEmulator, batch_id: str, **fault: object) -> None:
    emulator.inject(path_contains=cancel_path(batch_id), method="POST", **fault)  # type: ignore[arg-type]


# -- 1. the budget is a time ------------------------------------------------------------------


def test_an_outage_longer_than_five_attempts_is_ridden_out(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, status=503, times=12)
    result = setup.cancel(batch_id).get(timeout=30)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 13)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_past_the_deadline_the_cancel_fails_loudly_and_the_ledger_says_so(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, status=503, times=None)
    began = time.monotonic()
    [outcome] = gather([setup.cancel(batch_id)], timeout=30)
    assert type(outcome).__name__ == "ServerError"
    assert time.monotonic() - began >= DEADLINE * 0.9  # it kept trying until the deadline
    failure = setup.store.cancel_state(batch_id).failure
    assert failure is not None and failure.final
    assert failure.attempts == len(setup.emulator.cancel_requests(batch_id))
    assert f"batch_id={batch_id} workflow_id=- decision=failed" in setup.worker.log()


def test_duplicates_in_an_outage_make_one_series_of_attempts(setup: Setup) -> None:
    """10 duplicates: each attempt is the batch's, never one per duplicate."""
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, status=503, times=None)
    outcomes = gather([setup.cancel(batch_id) for _ in range(10)], timeout=40)
    assert {type(o).__name__ for o in outcomes} <= {"ServerError", "CancelFailedError"}
    posts = setup.emulator.cancel_requests(batch_id)
    failure = setup.store.cancel_state(batch_id).failure
    assert failure is not None and failure.final
    assert len(posts) == failure.attempts  # the duplicates added no request
    # the attempts follow one another: each arrived after the one before had been answered
    for before, after in zip(posts, posts[1:]):
        assert before.finished is not None and before.finished <= after.monotonic


# -- 5. what the server says about waiting ------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"headers": {"Retry-After": "1e9"}},
        {"headers": {"Retry-After": "inf"}},
        {"body": {"title": "Too Many Requests", "retryAfter": float("inf")}},
        {"headers": {"Retry-After": "1e20"}},
    ],
    ids=["1e9", "inf header", "Infinity body", "1e20"],
)
def test_a_huge_or_infinite_retry_after_is_capped(setup: Setup, fault: dict) -> None:
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, status=429, times=1, **fault)
    result = setup.cancel(batch_id).get(timeout=20)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 2)


# -- 6 and 7. answers that are not what they seem ----------------------------------------------


def test_an_html_404_from_a_proxy_is_not_taken_for_not_found(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    inject(
        setup.emulator, batch_id, status=404, body="<html><h1>404 Not Found</h1></html>", times=1
    )
    result = setup.cancel(batch_id).get(timeout=20)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 2)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


@pytest.mark.parametrize("body", [{}, {"status": "processing"}, {"status": "weird"}])
def test_a_200_that_does_not_say_cancelled_is_looked_at_again(setup: Setup, body: dict) -> None:
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, status=200, body=body, times=1)
    result = setup.cancel(batch_id).get(timeout=20)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 2)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_a_200_saying_the_batch_completed_is_already_finished(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, status=200, body={"status": "completed"}, times=1)
    result = setup.cancel(batch_id).get(timeout=20)
    assert (result["outcome"], result["attempts"]) == ("already_finished", 1)


# -- 10 and 11. sizes and time limits ------------------------------------------------------------


def test_a_huge_message_is_cut_before_it_is_stored(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    huge = {"batchId": batch_id, "status": "cancelled", "message": "x" * 5_000_000}
    inject(setup.emulator, batch_id, status=200, body=huge, times=1)
    result = setup.cancel(batch_id).get(timeout=20)
    assert result["outcome"] == "cancelled" and len(result["message"]) <= 300


def test_an_answer_trickled_slower_than_the_timeout_is_cut_off_and_retried(setup: Setup) -> None:
    """The timeout bounds the whole call, so the lease (2 x timeout + 5 s) holds."""
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, trickle=4.0, times=1)
    result = setup.cancel(batch_id).get(timeout=20)
    # the first request cancelled the batch, but its answer came too slowly;
    # the second is the same request (same key), answered from the API's cache
    assert (result["outcome"], result["attempts"]) == ("cancelled", 2)
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_a_soft_time_limit_inside_the_call_is_retried_not_failed(setup: Setup) -> None:
    batch_id = setup.emulator.create_batch()
    inject(setup.emulator, batch_id, delay=2.0, times=1)
    task = setup.app.tasks["pictify.cancel_batch"]
    result = task.apply_async((batch_id,), soft_time_limit=0.5).get(timeout=20)
    assert result["outcome"] == "cancelled" and result["attempts"] >= 2
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1
