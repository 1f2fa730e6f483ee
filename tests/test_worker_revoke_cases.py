"""A revoked workflow's batches are cancelled: the cases about our logic, on Redis.

The main cases run on both brokers in test_worker_revoke; these exercise
stamps, chords, finished batches, neighbours and late links, which do not
depend on the broker.
"""

from __future__ import annotations

import uuid

import pytest
from celery import chain, chord, group

import pictify_tasks
from tests.workers import Setup
from tests.workflows import after, cancel_of, polling, settled, start, wait, waiting_chain

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def redis_only(redis_setup: Setup) -> Setup:
    return redis_setup


def test_root_revoked_after_the_start_finished(redis_only: Setup) -> None:
    setup = redis_only
    result = chain(start(setup), wait(setup)).apply_async()
    batch_id = result.parent.get(timeout=30)
    polling(setup, batch_id)
    setup.app.control.revoke(result.parent.id)  # the root: start, already SUCCESS
    cancel_of(setup, batch_id)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_revoke_by_stamped_headers(redis_only: Setup) -> None:
    setup = redis_only
    stamp = uuid.uuid4().hex
    workflow = chain(start(setup), wait(setup))
    workflow.stamp(pictify_run=stamp)
    result = workflow.apply_async()
    batch_id = result.parent.get(timeout=30)
    polling(setup, batch_id)
    setup.app.control.revoke_by_stamped_headers({"pictify_run": stamp})
    cancel_of(setup, batch_id)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_chord_whose_header_is_revoked(redis_only: Setup) -> None:
    setup = redis_only
    result = chord([start(setup), start(setup)], after(setup)).apply_async()
    header = result.parent
    # Each result on its own: Celery 5.3's GroupResult.get() of a chord header
    # waits for a message the Redis backend already delivered to the body.
    batch_ids = [member.get(timeout=30) for member in header.results]
    header.revoke()
    for batch_id in batch_ids:
        cancel_of(setup, batch_id)
    assert {setup.emulator.batch(b)["status"] for b in batch_ids} == {"cancelled"}


def test_a_finished_batch_gets_no_cancel(redis_only: Setup) -> None:
    setup = redis_only
    setup.emulator.items_per_second = 1000.0
    try:
        result = chain(start(setup), wait(setup, poll_interval=0.05)).apply_async()
        assert result.get(timeout=30)["status"] == "completed"
    finally:
        setup.emulator.items_per_second = 0.0
    batch_id = result.parent.get(timeout=5)
    setup.app.control.revoke(result.parent.id)
    assert setup.app.tasks["pictify.cancel_workflow"].delay(result.parent.id).get(timeout=30) == []
    settled(setup)
    assert setup.emulator.cancel_requests(batch_id) == []


def test_a_workflow_beside_the_revoked_one_keeps_its_batch(redis_only: Setup) -> None:
    setup = redis_only
    revoked, revoked_batch = waiting_chain(setup)
    kept, kept_batch = waiting_chain(setup)
    revoked.revoke()
    cancel_of(setup, revoked_batch)
    settled(setup)
    assert setup.emulator.cancel_requests(kept_batch) == []
    assert setup.emulator.batch(kept_batch)["status"] in ("pending", "processing")
    kept.revoke()  # leave nothing polling behind
    cancel_of(setup, kept_batch)


def test_a_batch_linked_after_its_workflow_was_revoked_is_cancelled(redis_only: Setup) -> None:
    setup = redis_only
    workflow_id = f"wf-{uuid.uuid4().hex}"
    setup.app.control.revoke(workflow_id)  # nothing linked under it yet
    settled(setup)
    batch_id = setup.emulator.create_batch()
    pictify_tasks.track_batch(batch_id, workflow_id=workflow_id, app=setup.app)
    cancel_of(setup, batch_id)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_cancel_workflow_task_enqueues_one_cancel_per_running_batch(redis_only: Setup) -> None:
    setup = redis_only
    result = group(start(setup) for _ in range(3)).apply_async()
    batch_ids = result.get(timeout=30)
    enqueued = setup.app.tasks["pictify.cancel_workflow"].delay(result.id).get(timeout=30)
    assert sorted(enqueued) == sorted(batch_ids)
    for batch_id in batch_ids:
        cancel_of(setup, batch_id)
