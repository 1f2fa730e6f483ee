"""The Celery app the integration tests run in a real ``celery worker`` process.

Everything comes from the environment the test gives the worker: the broker,
the queue, and the PICTIFY_* settings (read by the package itself).
"""

from __future__ import annotations

import os

from celery import Celery

import pictify_tasks

app = Celery("pictify_tests")
app.conf.update(
    broker_url=os.environ["PICTIFY_TEST_BROKER_URL"],
    result_backend=os.environ["PICTIFY_TEST_RESULT_URL"],
    task_default_queue=os.environ.get("PICTIFY_TEST_QUEUE", "pictify-tests"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)
pictify_tasks.install(app)


@app.task(name="tests.after")
def after(*values: object) -> object:
    """A plain step (a chain's tail, or a step before a start); passes its last input on."""
    return values[-1] if values else None


@app.task(name="tests.render_and_hold", bind=True)
def render_and_hold(self: object, template_uid: str, release_key: str) -> str:
    """A user task that starts a batch, tracks it, then keeps running until released.

    It stands for a long user task that is revoked while running. It polls a
    Redis key with a deadline (what a real task would do with its own work).
    """
    import time

    import redis

    client = pictify_tasks.PictifyClient(
        os.environ["PICTIFY_API_KEY"], base_url=os.environ["PICTIFY_BASE_URL"]
    )
    start = client.start_batch(template_uid, [{"n": 1}, {"n": 2}])
    pictify_tasks.track_batch(start.batch_id)
    state = redis.Redis.from_url(os.environ["PICTIFY_STATE_URL"])
    state.set(f"{release_key}:batch", start.batch_id, ex=600)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not state.exists(release_key):
        time.sleep(0.05)
    return start.batch_id
