"""``install`` / ``uninstall``: the tasks registered and every hook connected in one place."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from pictify_tasks.tasks import TASKS, PictifyTask

__all__ = ["install", "installed", "uninstall"]

_installed: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def install(app: Any) -> None:
    """Register the package's tasks on ``app`` and connect its hooks.

    Calling it again for the same app does nothing; :func:`uninstall` undoes it.
    """
    with _lock:
        if app in _installed:
            return
        for name, (function, validator, options) in TASKS.items():
            # app.task() stays lazy on an app that is not finalized yet, and
            # returns the registered task when the name is already taken.
            base = type(
                f"{function.__name__}_base", (PictifyTask,), {"validator": staticmethod(validator)}
            )
            app.task(name=name, bind=True, base=base, shared=False, **options)(function)
        _installed.add(app)


def uninstall(app: Any) -> None:
    """Unregister the package's tasks from ``app`` and disconnect its hooks."""
    with _lock:
        if app not in _installed:
            return
        for name in TASKS:
            if name in app.tasks:
                app.tasks.unregister(name)
        _installed.discard(app)


def installed(app: Any) -> bool:
    return app in _installed
