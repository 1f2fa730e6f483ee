"""A real worker whose state is a real 3-master Redis Cluster: revokes, the ledger, the limit.

The broker and the results stay on the test Redis; only the package's state
(ledger, links, revoked ids, pending starts, the rate limiter) is on the
cluster, reached through ``pictify_state_cluster``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pictify_tasks import revoke_workflow
from pictify_tasks._runtime import runtime_for
from pictify_tasks.limiter import bucket_for
from tests.workers import Setup, gather, worker_setup
from tests.workflows import cancel_of, eventually, waiting_chain

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    redis_url = request.getfixturevalue("redis_url")
    cluster_url = request.getfixturevalue("redis_cluster_url")
    log_dir = tmp_path_factory.mktemp("worker-cluster")
    with worker_setup(
        "redis", redis_url, redis_url, log_dir, state_url=cluster_url, cluster=True
    ) as setup:
        yield setup


def test_a_broadcast_revoke_cancels_the_workflows_batch(setup: Setup) -> None:
    result, batch_id = waiting_chain(setup)
    setup.app.control.revoke(result.id)  # the chain's tail: found through the links
    cancel_of(setup, batch_id)
    assert eventually(lambda: setup.store.cancel_state(batch_id).outcome is not None)
    outcome = setup.store.cancel_state(batch_id).outcome
    assert outcome is not None and outcome.outcome == "cancelled"
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_revoke_workflow_cancels_from_the_callers_process(setup: Setup) -> None:
    # The caller's cluster client learns the slots on first use: done before the revoke, or
    # the worker (which heard the broadcast) may finish the cancel before the helper looks.
    runtime_for(setup.app).store.cancel_state("warm-up")
    result, batch_id = waiting_chain(setup)
    assert revoke_workflow(result, app=setup.app) == [batch_id]
    cancel_of(setup, batch_id)
    assert eventually(lambda: setup.emulator.batch(batch_id)["status"] == "cancelled")


def test_duplicate_cancels_make_one_request_and_share_the_limit(setup: Setup) -> None:
    emulator = setup.emulator
    emulator.set_rate_limit(10, 1.0)
    batches = [emulator.create_batch() for _ in range(12)]
    results = [setup.cancel(b) for b in batches for _ in range(3)]
    outcomes = gather(results, timeout=60)
    assert all(isinstance(o, dict) and o["outcome"] == "cancelled" for o in outcomes), outcomes
    for batch_id in batches:
        assert [r.status for r in emulator.cancel_requests(batch_id)] == [200]
    prefix, api_key = setup.env["PICTIFY_STATE_PREFIX"], setup.env["PICTIFY_API_KEY"]
    state = setup.store.redis.hgetall(f"{prefix}:{{rl:{bucket_for(api_key)}}}:limiter")
    assert int(float(state[b"api_limit"])) == 10
