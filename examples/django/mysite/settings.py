"""Settings of the example project: only what the example needs."""

import os

SECRET_KEY = "example-project-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["renders"]
ROOT_URLCONF = "mysite.urls"
DATABASES: dict[str, dict[str, str]] = {}  # no models
USE_TZ = True

# --8<-- [start:celery]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
# pictify-tasks reads its settings through the CELERY namespace too.
CELERY_PICTIFY_API_KEY = os.environ.get("PICTIFY_API_KEY")
CELERY_PICTIFY_BASE_URL = os.environ.get("PICTIFY_BASE_URL", "https://api.pictify.io")
CELERY_PICTIFY_REVOKE_SCOPE = "workflow"
# --8<-- [end:celery]
