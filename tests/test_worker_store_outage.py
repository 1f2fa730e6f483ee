"""A state-store outage loses no cancel: a real worker whose Redis (a server of the
test's own) is stopped and started again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.spare_redis import SpareRedis, spare_redis
from tests.workers import Setup, worker_setup
from tests.workflows import cancel_of, eventually, waiting_chain

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpareRedis]:
    with spare_redis(tmp_path_factory.mktemp("spare-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def setup(
    spare: SpareRedis, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """Broker and results on the main Redis; the package's state on the spare one."""
    log_dir = tmp_path_factory.mktemp("store-outage")
    with worker_setup("redis", redis_url, redis_url, log_dir, state_url=spare.url) as setup:
        yield setup


@pytest.fixture(autouse=True)
def _spare_up(spare: SpareRedis) -> Iterator[None]:
    yield
    if not spare.running:
        spare.start()


def test_a_cancel_asked_while_the_store_is_down_waits_for_it(
    setup: Setup, spare: SpareRedis
) -> None:
    batch_id = setup.emulator.create_batch()
    spare.stop()
    result = setup.cancel(batch_id)  # published though its wanted record could not be written
    retrying = f"batch_id={batch_id} workflow_id=- decision=retry"
    assert eventually(lambda: retrying in setup.worker.log(), 20)
    assert "StateStoreError" in setup.worker.log()
    assert setup.emulator.cancel_requests(batch_id) == []  # no cancel without the ledger
    spare.start()
    assert result.get(timeout=30)["outcome"] == "cancelled"
    assert setup.emulator.batch(batch_id)["effectiveCancels"] == 1


def test_a_revoke_heard_while_the_store_is_down_is_kept_and_done_later(
    setup: Setup, spare: SpareRedis
) -> None:
    result, batch_id = waiting_chain(setup)
    spare.stop()
    result.revoke()  # the listener hears it; the store cannot answer
    assert eventually(lambda: "kept to try again" in setup.worker.log(), 20)
    spare.start()
    cancel_of(setup, batch_id, timeout=30)
    assert eventually(lambda: setup.emulator.batch(batch_id)["status"] == "cancelled", 20)
