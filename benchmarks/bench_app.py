"""The Celery app the benchmark's ``celery worker`` runs.

``run_worker`` passes the broker, results and queue; the package reads its
own PICTIFY_* settings (API key, emulator URL, state URL, listener switch).
"""

from __future__ import annotations

from pictify_tasks.testing.worker import worker_app

app = worker_app("pictify_bench")


@app.task(name="bench.stamp")
def stamp(value: dict[str, object]) -> dict[str, object]:
    """A chain's next step: when it ran (wall clock), for the batch the wait returned."""
    import time

    return {"batch_id": value["batch_id"], "at": time.time()}
