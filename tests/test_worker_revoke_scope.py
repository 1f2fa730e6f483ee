"""``pictify_revoke_scope = "task"``: a revoke cancels the batches of that task and its
descendants only, found through the lineage carried in message headers."""

from __future__ import annotations

import pytest
from celery import chain

import pictify_tasks
from tests.workers import Setup
from tests.workflows import ROWS, TEMPLATE, after, cancel_of, polling, settled, wait

pytestmark = pytest.mark.worker


WORKER_ENV = {"PICTIFY_REVOKE_SCOPE": "task"}


@pytest.fixture(scope="module")
def task_scope(redis_setup: Setup) -> Setup:
    return redis_setup


def test_an_ancestor_three_steps_up_reaches_the_batch(task_scope: Setup) -> None:
    setup = task_scope
    step = setup.app.signature("tests.after")
    start = setup.app.tasks["pictify.start_batch"].si(TEMPLATE, ROWS)
    result = chain(
        step.clone(args=(1,)), step.clone(args=(2,)), step.clone(args=(3,)), start
    ).apply_async()
    batch_id = result.get(timeout=30)
    grandparent = result.parent.parent  # neither the root nor the parent of the start
    setup.app.control.revoke(grandparent.id)
    cancel_of(setup, batch_id)
    assert setup.emulator.batch(batch_id)["status"] == "cancelled"


def test_a_later_step_of_the_chain_does_not_reach_the_batch(task_scope: Setup) -> None:
    setup = task_scope
    result = chain(
        setup.app.tasks["pictify.start_batch"].s(TEMPLATE, ROWS), wait(setup), after(setup)
    ).apply_async()
    start = result.parent.parent
    batch_id = start.get(timeout=30)
    polling(setup, batch_id)
    result.revoke()  # the tail: a successor of the start, not an ancestor
    settled(setup)
    assert setup.emulator.cancel_requests(batch_id) == []
    setup.app.control.revoke(start.id)  # the task that started it does reach it
    cancel_of(setup, batch_id)
    # The waiting step sees the cancel and stops the chain with a clear error.
    with pytest.raises(pictify_tasks.BatchCancelledError):
        result.parent.get(timeout=30)
