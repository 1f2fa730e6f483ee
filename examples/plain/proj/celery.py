"""The project's Celery app: install pictify-tasks where the app is made."""

import os

from celery import Celery

import pictify_tasks

# --8<-- [start:app]
app = Celery("proj", include=["proj.tasks"])
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
    task_default_queue=os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery"),
)
# PICTIFY_API_KEY (and any other PICTIFY_* setting) comes from the environment.
pictify_tasks.install(app)  # registers the pictify.* tasks; calling it twice is harmless
# --8<-- [end:app]
