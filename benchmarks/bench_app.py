"""The Celery app the benchmark's ``celery worker`` runs, configured from its environment.

The benchmark picks the broker, result backend and a queue of its own per run
and passes them here as PICTIFY_BENCH_*; the package reads its own PICTIFY_*
settings (API key, emulator URL, state URL, listener switch) itself.
"""

from __future__ import annotations

import os

from celery import Celery

import pictify_tasks

app = Celery("pictify_bench")
app.conf.update(
    broker_url=os.environ["PICTIFY_BENCH_BROKER_URL"],
    result_backend=os.environ["PICTIFY_BENCH_RESULT_URL"],
    task_default_queue=os.environ["PICTIFY_BENCH_QUEUE"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)
pictify_tasks.install(app)
