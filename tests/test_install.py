"""``install`` / ``uninstall``, and the checks made before a task is published."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

import pictify_tasks
from pictify_tasks import ImproperlyConfigured, InvalidBatchIdError
from pictify_tasks.testing import PictifyEmulator


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery(
        f"install-test-{uuid.uuid4().hex[:6]}", broker="memory://", backend="cache+memory://"
    )
    yield app
    pictify_tasks.uninstall(app)
    app.close()


def test_install_registers_the_task_once_and_uninstall_removes_it(app: Celery) -> None:
    pictify_tasks.install(app)
    pictify_tasks.install(app)
    task = app.tasks["pictify.cancel_batch"]
    assert task.acks_late and task.reject_on_worker_lost
    pictify_tasks.uninstall(app)
    assert "pictify.cancel_batch" not in app.tasks
    pictify_tasks.install(app)
    assert "pictify.cancel_batch" in app.tasks


def test_the_public_name_is_the_current_apps_task(app: Celery) -> None:
    pictify_tasks.install(app)
    app.set_current()
    assert pictify_tasks.cancel_batch.name == "pictify.cancel_batch"
    assert pictify_tasks.cancel_batch.app is app


def test_the_public_name_explains_a_missing_install() -> None:
    other = Celery("not-installed", broker="memory://")
    other.set_current()
    with pytest.raises(ImproperlyConfigured, match=r"pictify_tasks.install\(app\)"):
        pictify_tasks.cancel_batch.delay("b1")


@pytest.mark.parametrize("bad", ["", "..", "a/b", "x" * 129, 7, None])
def test_bad_ids_never_reach_a_real_broker(redis_url: str, bad: object) -> None:
    queue = f"pictify-validate-{uuid.uuid4().hex[:8]}"
    app = Celery("validate", broker=redis_url, set_as_current=False)
    app.conf.task_default_queue = queue
    pictify_tasks.install(app)
    task = app.tasks["pictify.cancel_batch"]
    client = redis.Redis.from_url(redis_url)
    try:
        for publish in (
            lambda: task.delay(bad),
            lambda: task.apply_async((bad,)),
            lambda: task.s(bad).delay(),
            lambda: task.si(bad).apply_async(),
        ):
            with pytest.raises(InvalidBatchIdError):
                publish()
        assert client.llen(queue) == 0
        task.delay("b_valid")  # the same path does publish a good id
        assert client.llen(queue) == 1
        [message] = client.lrange(queue, 0, -1)
        assert b"pk_" not in message  # only the batch id travels
    finally:
        client.delete(queue)
        client.close()
        pictify_tasks.uninstall(app)
        app.close()


def test_wrong_arguments_are_a_type_error_before_publishing(app: Celery) -> None:
    pictify_tasks.install(app)
    task = app.tasks["pictify.cancel_batch"]
    with pytest.raises(TypeError, match="batch_id"):
        task.delay()
    with pytest.raises(TypeError):
        task.delay("b1", "b2")


def test_eager_cancel_without_a_key_fails_at_once(app: Celery) -> None:
    with PictifyEmulator() as emulator:
        app.conf.update(
            pictify_base_url=emulator.base_url,
            pictify_state_url="memory://",
            task_always_eager=True,
            task_eager_propagates=True,
        )
        pictify_tasks.install(app)
        with pytest.raises(ImproperlyConfigured, match="PICTIFY_API_KEY"):
            app.tasks["pictify.cancel_batch"].delay(emulator.create_batch())
        assert emulator.requests == []
