"""Cleanup beyond revoke, each trigger end to end on a real worker, on Redis and RabbitMQ:
the trigger fires and the batch is cancelled once; without the option it is left alone."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import pytest
from celery import chain

from tests.test_worker_recovery import new_batch
from tests.workers import Setup, run_worker
from tests.workflows import ROWS, TEMPLATE, cancel_of, eventually, settled

pytestmark = pytest.mark.worker

WORKER_ENV = {"PICTIFY_SWEEP_INTERVAL": "1"}


def cancel_on(*triggers: str) -> dict[str, Any]:
    return {"headers": {"pictify_cancel_on": list(triggers)}}


def call(setup: Setup, name: str, *args: Any, **options: Any) -> Any:
    return setup.app.signature(name, args=args).apply_async(**options)


def left_alone(setup: Setup, batch_id: str) -> None:
    settled(setup)  # every cancel asked before now has been sent
    assert setup.emulator.cancel_requests(batch_id) == []
    assert setup.emulator.batch(batch_id)["status"] == "pending"


def reason_logged(setup: Setup, batch_id: str, reason: str) -> bool:
    return any(
        f"batch_id={batch_id}" in line and f'reason="{reason}' in line
        for line in setup.worker.log().splitlines()
    )


def test_a_task_that_fails_after_starting_a_batch_cancels_it(setup: Setup) -> None:
    before = set(setup.emulator.batches())
    result = call(setup, "tests.start_then_fail", TEMPLATE, **cancel_on("failure"))
    batch_id = new_batch(setup, before)
    cancel_of(setup, batch_id)
    assert result.state == "FAILURE"
    assert eventually(lambda: reason_logged(setup, batch_id, f"failure: {result.id} ValueError"))
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_without_the_option_a_failed_task_leaves_its_batch_alone(setup: Setup) -> None:
    before = set(setup.emulator.batches())
    result = call(setup, "tests.start_then_fail", TEMPLATE)
    batch_id = new_batch(setup, before)
    assert eventually(lambda: result.state == "FAILURE")
    left_alone(setup, batch_id)


def test_a_retried_task_triggers_failure_only_after_its_last_retry(setup: Setup) -> None:
    before = set(setup.emulator.batches())
    result = call(setup, "tests.start_then_fail", TEMPLATE, 2, **cancel_on("failure"))
    batch_id = new_batch(setup, before)
    assert eventually(lambda: result.state == "RETRY")
    assert setup.emulator.cancel_requests(batch_id) == []  # a retry is not a failure
    cancel_of(setup, batch_id, timeout=30)
    assert result.state == "FAILURE"


@pytest.mark.parametrize("limit", ["soft_time_limit", "time_limit"])
def test_a_time_limit_cancels_the_batch(setup: Setup, limit: str) -> None:
    before = set(setup.emulator.batches())
    options = {limit: 1.0, **cancel_on("time_limit")}
    result = call(setup, "tests.start_then_run", TEMPLATE, 30.0, **options)
    batch_id = new_batch(setup, before)
    cancel_of(setup, batch_id, timeout=30)
    assert eventually(lambda: reason_logged(setup, batch_id, f"time_limit: {result.id}"))


def test_a_time_limit_without_the_option_leaves_the_batch_alone(setup: Setup) -> None:
    before = set(setup.emulator.batches())
    result = call(setup, "tests.start_then_run", TEMPLATE, 30.0, soft_time_limit=1.0)
    batch_id = new_batch(setup, before)
    assert eventually(lambda: result.state == "FAILURE", 30)
    left_alone(setup, batch_id)


def test_a_worker_lost_under_the_task_cancels_its_batch(setup: Setup) -> None:
    before = set(setup.emulator.batches())
    result = call(setup, "tests.start_then_run", TEMPLATE, 60.0, **cancel_on("worker_lost"))
    batch_id = new_batch(setup, before)
    children = _pool_children(setup.worker.process.pid)
    for child in children:
        os.kill(child, signal.SIGKILL)
    cancel_of(setup, batch_id, timeout=30)
    assert eventually(lambda: result.state == "FAILURE")
    assert eventually(lambda: reason_logged(setup, batch_id, f"worker_lost: {result.id}"))


def test_a_warm_shutdown_that_lets_the_task_finish_is_no_worker_lost(setup: Setup) -> None:
    queue = f"pictify-warm-{uuid.uuid4().hex[:8]}"
    before = set(setup.emulator.batches())
    with run_worker(
        broker_url=setup.broker_url,
        result_url=setup.result_url,
        queue=queue,
        env=setup.env,
        log_dir=setup.log_dir,
    ) as worker:
        options = {"queue": queue, **cancel_on("worker_lost", "failure")}
        result = call(setup, "tests.start_then_run", TEMPLATE, 1.5, **options)
        batch_id = new_batch(setup, before)
        os.kill(worker.process.pid, signal.SIGTERM)  # warm shutdown: lets the task finish
        worker.process.wait(30)
    assert result.get(timeout=30) == batch_id
    left_alone(setup, batch_id)


def test_a_later_step_of_the_chain_failing_cancels_the_batch(setup: Setup) -> None:
    start = setup.app.tasks["pictify.start_batch"].s(TEMPLATE, ROWS)
    failing = setup.app.signature("tests.boom").set(**cancel_on("chain_failure"))
    result = chain(start, failing).apply_async()
    batch_id = result.parent.get(timeout=30)
    cancel_of(setup, batch_id)
    assert eventually(lambda: reason_logged(setup, batch_id, f"chain_failure: {result.id}"))


def test_a_chain_failing_without_the_option_leaves_the_batch_alone(setup: Setup) -> None:
    start = setup.app.tasks["pictify.start_batch"].s(TEMPLATE, ROWS)
    result = chain(start, setup.app.signature("tests.boom")).apply_async()
    batch_id = result.parent.get(timeout=30)
    assert eventually(lambda: result.state == "FAILURE")
    left_alone(setup, batch_id)


def test_a_batch_past_its_max_runtime_is_cancelled_and_what_it_saved_counted(
    setup: Setup,
) -> None:
    start = setup.app.tasks["pictify.start_batch"]
    result = start.apply_async((TEMPLATE, ROWS), {"max_runtime": 0.5})
    batch_id = result.get(timeout=30)
    cancel_of(setup, batch_id, timeout=20)  # by the sweep, every second
    assert eventually(lambda: reason_logged(setup, batch_id, f"max_runtime: {batch_id}"))
    assert eventually(lambda: setup.store.cancel_state(batch_id).outcome is not None)
    outcome = setup.store.cancel_state(batch_id).outcome
    assert outcome is not None and outcome.items_not_rendered == len(ROWS)


def _pool_children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]
