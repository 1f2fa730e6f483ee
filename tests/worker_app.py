"""The Celery app the integration tests run in a real ``celery worker`` process.

Everything comes from the environment the test gives the worker: the broker,
the queue, and the PICTIFY_* settings (read by the package itself).
"""

from __future__ import annotations

import os

import pictify_tasks
from pictify_tasks.testing.worker import worker_app

app = worker_app("pictify_tests")


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


@app.task(name="tests.dispatch")
def dispatch(template_uid: str) -> list[str]:
    """A dispatcher: launches two independent workflows and a housekeeping task that expires.

    All three share the dispatcher as their root. Returns the three task ids.
    """
    from datetime import datetime, timedelta, timezone

    start = app.tasks["pictify.start_batch"]
    first = start.apply_async((template_uid, [{"n": 1}]))
    second = start.apply_async((template_uid, [{"n": 2}]))
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    expired = app.tasks["tests.after"].apply_async(("housekeeping",), expires=past)
    return [first.id, second.id, expired.id]
