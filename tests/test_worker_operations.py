"""What an operator sees of a real worker: its start-up line, metrics across the prefork
pool's processes, and auto-cancels logged inside their workflow."""

from __future__ import annotations

import tempfile
import uuid

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
        assert eventually(lambda: "key=none" in worker.log(), 20)
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
