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
