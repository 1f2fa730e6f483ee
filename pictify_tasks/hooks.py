"""``install`` / ``uninstall``: tasks, bootstep and every signal in one place.

Signals are process-wide, so they are connected while at least one app is
installed and disconnected with the last; each handler checks that the app
it is about is installed. Handlers never raise into Celery and do nothing
slow where they run: they hand the work to the runtime's background thread.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable

from celery import current_task
from celery.signals import before_task_publish, task_revoked

from pictify_tasks._runtime import runtime_for
from pictify_tasks.listener import RevokeListener, RevokeNotice
from pictify_tasks.tasks import TASKS, PictifyTask
from pictify_tasks.workflow import LINEAGE_HEADER, MAX_LINEAGE, cancel_ids

__all__ = ["install", "installed", "on_revoke_notice", "uninstall"]

logger = logging.getLogger("pictify_tasks.hooks")

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
            base = type(
                f"{function.__name__}_base", (PictifyTask,), {"validator": staticmethod(validator)}
            )
            # shared=False: register on this app only, not on every app created.
            # app.task() stays lazy on an app that is not finalized yet.
            app.task(name=name, bind=True, base=base, shared=False, **options)(function)
        app.steps["consumer"].add(RevokeListener)
        if not _installed:
            for signal, handler in _SIGNALS:
                signal.connect(handler, weak=False, dispatch_uid=f"pictify:{handler.__name__}")
        _installed.add(app)


def uninstall(app: Any) -> None:
    """Unregister the package's tasks from ``app`` and disconnect its hooks."""
    with _lock:
        if app not in _installed:
            return
        for name in TASKS:
            if name in app.tasks:
                app.tasks.unregister(name)
        app.steps["consumer"].discard(RevokeListener)
        _installed.discard(app)
        if not _installed:
            for signal, handler in _SIGNALS:
                signal.disconnect(handler, dispatch_uid=f"pictify:{handler.__name__}")


def installed(app: Any) -> bool:
    return app in _installed


def on_revoke_notice(app: Any, notice: RevokeNotice) -> None:
    """A revoke broadcast was heard: cancel the batches of the ids it names."""
    if app not in _installed:
        return
    ids = notice.link_ids()
    batches = cancel_ids(app, ids)
    if batches:
        logger.info("revoke of %s: cancelling batches %s", ids, batches)


def _revoked_ids(request: Any, scope: str) -> list[str]:
    """The ids a revoked task's request stands for: in workflow scope, its workflow too."""
    ids = [getattr(request, "id", None)]
    if scope == "workflow":
        ids += [
            getattr(request, "root_id", None),
            getattr(request, "group_id", None) or getattr(request, "group", None),
        ]
    return [i for i in ids if isinstance(i, str) and i]


def _on_task_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """``task_revoked``: a worker discarded, expired or terminated a task it held."""
    try:
        app = getattr(sender, "app", None)
        if app is None or app not in _installed or request is None:
            return
        runtime = runtime_for(app)
        ids = _revoked_ids(request, runtime.settings.revoke_scope)
        runtime.submit(cancel_ids, app, ids)
    except Exception:
        logger.exception("pictify-tasks: handling task_revoked failed")


def _on_before_task_publish(headers: Any = None, **_: Any) -> None:
    """Carry the publishing task's ancestry to the task it publishes (no I/O)."""
    try:
        task = current_task._get_current_object() if current_task else None
        if task is None or task.app not in _installed or not isinstance(headers, dict):
            return
        request = task.request
        if not request.id or request.is_eager:
            return  # not inside a running task
        lineage = list(getattr(request, LINEAGE_HEADER, None) or [])
        if headers.get("id") != request.id:
            lineage.append(request.id)  # a child; a retry or replacement keeps its ancestry
        if lineage:
            headers[LINEAGE_HEADER] = lineage[-MAX_LINEAGE:]
    except Exception:
        logger.exception("pictify-tasks: adding the lineage header failed")


_SIGNALS: list[tuple[Any, Callable[..., None]]] = [
    (task_revoked, _on_task_revoked),
    (before_task_publish, _on_before_task_publish),
]
