"""Making a task "current" in the test process, the way a worker does while it runs one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery._state import _task_stack


@contextmanager
def running(task: Any, **fields: Any) -> Iterator[Any]:
    """Make ``task`` the current task with a request of ``fields``, as a worker does."""
    task.push_request(**{"called_directly": False, **fields})
    _task_stack.push(task)
    try:
        yield task.request
    finally:
        _task_stack.pop()
        task.pop_request()
