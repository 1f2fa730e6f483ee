"""A revoked workflow's batches are cancelled: the main cases, on Redis and on RabbitMQ.

Each test runs a real ``celery worker`` (with the package's bootstep and
signals) against the emulator. The other cases are in test_worker_revoke_cases.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from celery import group

import pictify_tasks
from tests.workers import Setup
from tests.workflows import (
    TEMPLATE,
    cancel_of,
    eventually,
    published,
    settled,
    start,
    timed_revoke,
    waiting_chain,
)

pytestmark = pytest.mark.worker


# -- the main cases, on both brokers ---------------------------------------------------------


def test_chain_revoked_through_its_tail_while_waiting(
    setup: Setup, revoke_timings: dict[str, list[float]]
) -> None:
    result, batch_id = waiting_chain(setup)
    timed_revoke(setup, revoke_timings, "broadcast: chain tail", batch_id, result.revoke)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"
    # The waiting step sees the cancel and stops the chain with a clear error;
    # it never sends a cancel itself.
    with pytest.raises(pictify_tasks.BatchCancelledError):
        result.parent.get(timeout=30)
    assert setup.emulator.batch(batch_id)["cancelRequests"] == 1


@pytest.mark.parametrize("terminate", [False, True], ids=["no-terminate", "terminate"])
def test_running_task_revoked(setup: Setup, terminate: bool) -> None:
    release = f"release-{uuid.uuid4().hex}"
    state = redis.Redis.from_url(setup.env["PICTIFY_STATE_URL"])
    try:
        result = setup.app.signature("tests.render_and_hold", args=(TEMPLATE, release)).delay()
        batch_id = published(state, release)
        result.revoke(terminate=terminate)
        cancel_of(setup, batch_id)
        assert setup.emulator.batch(batch_id)["status"] == "cancelled"
        if terminate:  # the pool really killed it: it did not run on to its return
            assert eventually(lambda: result.state == "REVOKED")
    finally:
        state.set(release, 1, ex=60)
        state.close()


def test_group_of_five_revoked_with_group_result(setup: Setup) -> None:
    result = group(start(setup) for _ in range(5)).apply_async()
    batch_ids = result.get(timeout=30)
    assert len(set(batch_ids)) == 5
    result.revoke()
    for batch_id in batch_ids:
        cancel_of(setup, batch_id)
    assert {setup.emulator.batch(b)["status"] for b in batch_ids} == {"cancelled"}


def test_revoke_workflow_helper_cancels_from_the_callers_process(
    setup: Setup, revoke_timings: dict[str, list[float]]
) -> None:
    result, batch_id = waiting_chain(setup)
    enqueued: list[str] = []
    timed_revoke(
        setup,
        revoke_timings,
        "helper: revoke_workflow",
        batch_id,
        lambda: enqueued.extend(pictify_tasks.revoke_workflow(result, app=setup.app)),
    )
    assert enqueued == [batch_id]
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_two_workers_hear_the_broadcast_and_send_one_cancel(setup: Setup) -> None:
    with setup.another_worker(concurrency=2) as second:
        result, batch_id = waiting_chain(setup)
        result.revoke()
        cancel_of(setup, batch_id)
        settled(setup)
        assert len(setup.emulator.cancel_requests(batch_id)) == 1
        # Each worker's listener heard the broadcast and enqueued a cancel itself.
        heard = f"cancelling batches ['{batch_id}']"
        assert eventually(lambda: heard in second.log() and heard in setup.worker.log())
