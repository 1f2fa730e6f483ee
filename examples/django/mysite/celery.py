"""The project's Celery app: settings from Django's, under the CELERY_ namespace."""

import os

from celery import Celery

import pictify_tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

app = Celery("mysite")
# CELERY_PICTIFY_API_KEY in settings.py becomes pictify_api_key here.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
pictify_tasks.install(app)
