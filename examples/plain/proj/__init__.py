"""A plain Celery project that cancels its Pictify batches with pictify-tasks."""
