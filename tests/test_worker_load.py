"""Load: 20 workflows revoked at once while 2,000 other cancels run, with the API
answering 503 to a tenth of the cancel requests. Every batch is accounted for."""

from __future__ import annotations

import uuid

import pytest

import pictify_tasks
from tests.workers import Setup, gather
from tests.workflows import eventually

pytestmark = pytest.mark.worker

OTHER_CANCELS = 2000
WORKFLOWS = 20


WORKER_ENV = {"PICTIFY_CANCEL_MAX_ATTEMPTS": ""}


@pytest.fixture(scope="module")
def setup(redis_setup: Setup) -> Setup:
    return redis_setup


def test_every_batch_is_cancelled_once_or_left_alone(setup: Setup) -> None:
    emulator, app = setup.emulator, setup.app
    emulator.set_rate_limit(None)  # the API's rate limit is another test's subject
    emulator.inject(status=503, times=None, every=10, method="POST", path_contains="/cancel")
    revoked: dict[str, list[str]] = {}
    spared: dict[str, list[str]] = {}
    for table in (revoked, spared):
        for _ in range(WORKFLOWS):
            workflow_id = f"load-{uuid.uuid4().hex}"
            batches = [emulator.create_batch() for _ in range(2)]
            for batch_id in batches:
                pictify_tasks.track_batch(batch_id, workflow_id=workflow_id, app=app)
            table[workflow_id] = batches
    others = [emulator.create_batch() for _ in range(OTHER_CANCELS)]
    task = app.tasks["pictify.cancel_batch"]
    with app.producer_or_acquire() as producer:
        results = [task.apply_async((b,), producer=producer) for b in others]
    app.control.revoke(list(revoked))  # all at once, while the cancels run

    outcomes = gather(results, timeout=240)
    assert [o["outcome"] if isinstance(o, dict) else o for o in outcomes] == ["cancelled"] * len(
        others
    )
    wanted = [b for batches in revoked.values() for b in batches]
    assert eventually(
        lambda: all(emulator.batch(b)["status"] == "cancelled" for b in wanted), 120
    ), "a revoked workflow's batch is still running"
    for batch_id in others + wanted:
        assert emulator.batch(batch_id)["effectiveCancels"] == 1, batch_id
    for batches in spared.values():
        for batch_id in batches:
            assert emulator.cancel_requests(batch_id) == [], "a batch nobody revoked was cancelled"
            assert emulator.batch(batch_id)["status"] == "processing"
    # the fault did its job: some requests were answered 503 and retried
    assert any(r.status == 503 for r in emulator.cancel_requests())
