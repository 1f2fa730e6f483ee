"""The Celery app the benchmark's ``celery worker`` runs.

``run_worker`` passes the broker, results and queue; the package reads its
own PICTIFY_* settings (API key, emulator URL, state URL, listener switch).
"""

from __future__ import annotations

from pictify_tasks.testing.worker import worker_app

app = worker_app("pictify_bench")
