"""What an operator sees of a real worker: its start-up line, metrics across the prefork
pool's processes, and auto-cancels logged inside their workflow."""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.workers import Setup, gather, run_worker
from tests.workflows import cancel_of, eventually, waiting_chain

pytestmark = pytest.mark.worker

METRICS_DIR = tempfile.mkdtemp(prefix="pictify-metrics-")
WORKER_ENV = {"PROMETHEUS_MULTIPROC_DIR": METRICS_DIR}


@pytest.fixture(scope="module")
def setup(redis_setup: Setup) -> Setup:
    return redis_setup


def test_the_worker_says_what_it_uses_at_start_without_the_key(setup: Setup) -> None:
    key = setup.env["PICTIFY_API_KEY"]
    log = setup.worker.log()
    [line] = [line for line in log.splitlines() if "pictify-tasks: base_url=" in line]
    assert f"base_url={setup.emulator.base_url}" in line
    assert "scope=workflow listener=on" in line
    assert line.endswith(f"key=pk_test_***{key[-4:]}")
    assert key not in log


def test_a_worker_without_a_key_says_so_loudly_at_start(setup: Setup) -> None:
    env = {k: v for k, v in setup.env.items() if k != "PICTIFY_API_KEY"}
    with run_worker(
        broker_url=setup.broker_url,
        result_url=setup.result_url,
        queue=f"pictify-nokey-{uuid.uuid4().hex[:8]}",
        env=env,
        log_dir=setup.log_dir,
    ) as worker:
        assert eventually(lambda: "key=<not set>" in worker.log(), 20)
        assert "ERROR/MainProcess] pictify-tasks: no API key" in worker.log()


def test_metrics_count_every_pool_process_in_multiprocess_mode(setup: Setup) -> None:
    batches = [setup.emulator.create_batch() for _ in range(8)]
    outcomes = gather([setup.cancel(b) for b in batches], timeout=60)
    assert [o["outcome"] for o in outcomes] == ["cancelled"] * 8
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=METRICS_DIR)
    counted = registry.get_sample_value("pictify_cancels_total", {"outcome": "cancelled"})
    assert counted is not None and counted >= 8


def test_an_auto_cancel_is_logged_inside_its_workflow_with_its_reason(setup: Setup) -> None:
    result, batch_id = waiting_chain(setup)
    root = result.parent.parent.id
    result.revoke()
    cancel_of(setup, batch_id)
    line = f"batch_id={batch_id} workflow_id={root} decision=outcome outcome=cancelled"
    assert eventually(lambda: line in setup.worker.log(), 20)
    assert f'reason="revoked: {result.id}"' in setup.worker.log()


def test_a_long_wait_shows_progress_and_polls_as_the_batch_goes(setup: Setup) -> None:
    """State PROGRESS with completed/total; polls aimed at the end, not every poll_interval."""
    setup.emulator.items_per_second = 10.0  # 30 items: about 3 s
    try:
        start = setup.app.tasks["pictify.start_batch"].s(
            "tpl_progress", [{"n": n} for n in range(30)]
        )
        wait = setup.app.tasks["pictify.wait_for_batch"].s(poll_interval=0.1)
        result = (start | wait).apply_async()
        seen: list[Any] = []

        def progressing() -> bool:
            if result.state == "PROGRESS":
                seen.append(result.info)
            return bool(seen)

        assert eventually(progressing, 20), "the wait never showed PROGRESS"
        final = result.get(timeout=30)
    finally:
        setup.emulator.items_per_second = 0.0
    assert final["status"] == "completed" and final["completed_items"] == 30
    assert seen[0]["total_items"] == 30 and 0 <= seen[0]["completed_items"] <= 30
    polls = setup.emulator.requests_matching("GET", f"/{final['batch_id']}/results")
    assert len(polls) < 3.0 / 0.1 / 3  # a third of polling every poll_interval, at most


def test_a_polls_progress_is_noted_with_its_registration(setup: Setup) -> None:
    """What a later cancel saves is counted from the last poll: noted in the waiter's round trip."""
    setup.emulator.items_per_second = 5.0  # 30 items: about 6 s
    try:
        start = setup.app.tasks["pictify.start_batch"].s("tpl_noted", [{"n": n} for n in range(30)])
        wait = setup.app.tasks["pictify.wait_for_batch"].s(poll_interval=0.2)
        result = (start | wait).apply_async()
        batch_id = result.parent.get(timeout=30)
        key = setup.store.batch_key(batch_id, "progress")

        def noted() -> bool:  # the start notes "0/30"; a poll, what it saw
            value = setup.store.redis.get(key)
            return value is not None and not value.startswith(b"0/") and value.endswith(b"/30")

        assert eventually(noted, 20), "no poll noted the batch's progress"
    finally:
        setup.emulator.items_per_second = 0.0
    assert result.get(timeout=30)["status"] == "completed"
