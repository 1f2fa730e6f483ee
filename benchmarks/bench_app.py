"""The Celery app the benchmarks' ``celery worker`` processes run.

``run_worker`` passes the broker, results and queue; the package reads its
own PICTIFY_* settings (API key, emulator URL, state URL, listener switch).
Two tasks stand for what the package is measured against: a naive cancel
(one ``requests.post``, no ledger, no retry, no limit) and a task that does
nothing (Celery's own cost per task).
"""

from __future__ import annotations

import os

import requests

from pictify_tasks.testing.worker import worker_app

app = worker_app("pictify_bench")
# Celery's default, as users run workers (the tests' app prefetches one message per process).
app.conf.worker_prefetch_multiplier = 4


@app.task(name="bench.naive_cancel")
def naive_cancel(batch_id: str) -> int:
    """What a user without the package writes: one POST, whatever it answers."""
    response = requests.post(
        f"{os.environ['PICTIFY_BASE_URL']}/templates/batch/{batch_id}/cancel",
        headers={"Authorization": f"Bearer {os.environ['PICTIFY_API_KEY']}"},
        timeout=10,
    )
    return response.status_code


@app.task(name="bench.noop")
def noop(batch_id: str) -> None:
    """Nothing: what Celery alone costs per task."""


@app.task(name="bench.stamp")
def stamp(value: dict[str, object]) -> dict[str, object]:
    """A chain's next step: when it ran (wall clock), for the batch the wait returned."""
    import time

    return {"batch_id": value["batch_id"], "at": time.time()}
