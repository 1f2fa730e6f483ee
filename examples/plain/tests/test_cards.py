"""The project's tests: pytest, the package's emulator fixture, a real worker."""

from proj.tasks import render_cards

from pictify_tasks import cancel_batch
from pictify_tasks.testing import PictifyEmulator, assert_cancelled_once, assert_not_cancelled
from pictify_tasks.testing.worker import WorkerProcess


def test_revoking_the_workflow_cancels_its_batch(
    worker: WorkerProcess, pictify_emulator_session: PictifyEmulator
) -> None:
    flow = render_cards([{"name": "Ada"}, {"name": "Grace"}])
    batch_id = flow.parent.parent.get(timeout=30)  # the start step returns the batch id
    assert_not_cancelled(pictify_emulator_session, batch_id)
    flow.revoke()
    assert_cancelled_once(pictify_emulator_session, batch_id, timeout=30)


def test_a_cancel_asked_twice_reaches_the_api_once(
    worker: WorkerProcess, pictify_emulator_session: PictifyEmulator
) -> None:
    batch_id = pictify_emulator_session.create_batch(total_items=50, items_per_second=0)
    first, second = cancel_batch.delay(batch_id), cancel_batch.delay(batch_id)
    assert first.get(timeout=30)["outcome"] == second.get(timeout=30)["outcome"] == "cancelled"
    assert_cancelled_once(pictify_emulator_session, batch_id)
