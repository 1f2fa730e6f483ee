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


def _start_and_track(task_id: str, template_uid: str) -> str:
    """Start a batch with the user's own client (one per task id: retries get the same)."""
    client = pictify_tasks.PictifyClient(
        os.environ["PICTIFY_API_KEY"], base_url=os.environ["PICTIFY_BASE_URL"]
    )
    start = client.start_batch(template_uid, [{"n": 1}, {"n": 2}], idempotency_key=task_id)
    pictify_tasks.track_batch(start.batch_id)
    return start.batch_id


@app.task(name="tests.start_then_fail", bind=True, max_retries=5)
def start_then_fail(self: object, template_uid: str, retries: int = 0) -> None:
    """Starts and tracks a batch, retries ``retries`` times (1 s apart), then fails."""
    request = self.request  # type: ignore[attr-defined]
    _start_and_track(request.id, template_uid)
    if request.retries < retries:
        raise self.retry(countdown=1.0)  # type: ignore[attr-defined]
    raise ValueError("the user's task failed after starting its batch")


@app.task(name="tests.start_then_run", bind=True)
def start_then_run(self: object, template_uid: str, seconds: float) -> str:
    """Starts and tracks a batch, then works for ``seconds`` (time limits, lost workers)."""
    import time

    batch_id = _start_and_track(self.request.id, template_uid)  # type: ignore[attr-defined]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return batch_id


@app.task(name="tests.record")
def record(value: object, key: str) -> object:
    """A chain's tail that counts its runs in a Redis list ``key``; passes ``value`` on."""
    import redis

    state = redis.Redis.from_url(os.environ["PICTIFY_STATE_URL"])
    state.rpush(key, 1)
    state.expire(key, 600)
    return value


@app.task(name="tests.boom")
def boom(*values: object) -> None:
    """A later step of a chain that fails for good."""
    raise RuntimeError("a later step failed")
