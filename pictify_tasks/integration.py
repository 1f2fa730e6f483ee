"""``install`` / ``uninstall``: the package's tasks, bootstep and signals, in one object.

Signals are process-wide, so :class:`CeleryIntegration` connects them while at
least one app is installed and disconnects them with the last, as
OpenTelemetry's ``CeleryInstrumentor`` does in one instance. Each handler
checks that the app it is about is installed, never raises into Celery, and
does nothing slow where it runs: store round trips and publishes go to the
fan-out's background thread.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable

from celery import current_task
from celery.signals import (
    before_task_publish,
    task_failure,
    task_received,
    task_revoked,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from pictify_tasks._guard import logged_not_raised
from pictify_tasks._runtime import existing_runtime, runtime_for
from pictify_tasks.cleanup import CleanupTriggers
from pictify_tasks.errors import PictifyError
from pictify_tasks.names import BATCH_ENDED
from pictify_tasks.revoke.links import LINEAGE_HEADER, Scope, lineage_for_child
from pictify_tasks.revoke.listener import RevokeListener
from pictify_tasks.settings import MEMORY_STATE_URL
from pictify_tasks.sweep import CancelSweep
from pictify_tasks.tasks import TASKS
from pictify_tasks.tasks.base import run_eagerly_in_a_loop
from pictify_tasks.triggers import Trigger

__all__ = ["CeleryIntegration", "install", "uninstall"]

logger = logging.getLogger("pictify_tasks.integration")


class CeleryIntegration:
    """Which apps the package is installed on, and the hooks that serve them."""

    def __init__(self) -> None:
        self._apps: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._cleanup = CleanupTriggers(self.installed)
        self._signals: list[tuple[Any, Callable[..., None]]] = [
            (task_revoked, self._on_task_revoked),
            (before_task_publish, self._on_before_task_publish),
            (worker_ready, self._on_worker_ready),
            (worker_shutdown, self._on_worker_shutdown),
            (worker_process_shutdown, self._on_worker_shutdown),
            (task_received, self._cleanup.on_task_received),
            (task_failure, self._cleanup.on_task_failure),
        ]

    def install(self, app: Any) -> None:
        """Register the package's tasks on ``app`` and connect its hooks.

        Calling it again for the same app does nothing; :meth:`uninstall` undoes it.
        """
        with self._lock:
            if app in self._apps:
                return
            for name, spec in TASKS.items():
                base = type(
                    f"{spec.function.__name__}_base",
                    (spec.base,),
                    {"validator": staticmethod(spec.validator)},
                )
                # shared=False: register on this app only, not on every app created.
                # app.task() stays lazy on an app that is not finalized yet.
                app.task(name=name, bind=True, base=base, shared=False, **spec.options)(
                    run_eagerly_in_a_loop(spec.function)
                )
            for step in _STEPS:
                app.steps["consumer"].add(step)
            if not self._apps:
                self._connect()
            self._apps.add(app)

    def uninstall(self, app: Any) -> None:
        """Unregister the package's tasks from ``app`` and disconnect its hooks."""
        with self._lock:
            if app not in self._apps:
                return
            for name in TASKS:
                if name in app.tasks:
                    app.tasks.unregister(name)
            for step in _STEPS:
                app.steps["consumer"].discard(step)
            self._apps.discard(app)
            if not self._apps:
                self._disconnect()

    def installed(self, app: Any) -> bool:
        return app in self._apps

    def _connect(self) -> None:
        for signal, handler in self._signals:
            signal.connect(handler, weak=False, dispatch_uid=_uid(handler))
        metrics = _metrics()
        if metrics is not None:
            metrics.connect()

    def _disconnect(self) -> None:
        for signal, handler in self._signals:
            signal.disconnect(handler, dispatch_uid=_uid(handler))
        metrics = _metrics()
        if metrics is not None:
            metrics.disconnect()

    def _on_task_revoked(
        self, sender: Any = None, request: Any = None, expired: bool = False, **_: Any
    ) -> None:
        """``task_revoked``: a worker discarded, expired or terminated a task it held.

        Only the task's own id, as the listener would hear it: the same id
        cancels the same batches whichever path heard it. An expired task was
        not revoked by anyone: it cancels only its own batches (task scope)
        and is not remembered as revoked.
        """
        with logged_not_raised(logger, "handling task_revoked"):
            app = getattr(sender, "app", None)
            task_id = getattr(request, "id", None)
            if app is None or app not in self._apps or not isinstance(task_id, str):
                return
            runtime = runtime_for(app)
            if Trigger.REVOKE not in runtime.settings.cancel_on:
                return
            fanout = runtime.fanout
            if expired:
                fanout.in_background(
                    fanout.handle_revoke,
                    [task_id],
                    scope=Scope.TASK,
                    remember=False,
                    reason=f"expired: {task_id}",
                )
            else:
                fanout.in_background(fanout.handle_revoke, [task_id])

    def _on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        """Say at start what the worker will use, and shout when it has no key."""
        with logged_not_raised(logger, "describing the configuration"):
            app = getattr(sender, "app", None)
            if app is None or app not in self._apps:
                return
            try:
                settings = runtime_for(app).settings
            except PictifyError as error:
                logger.error("pictify-tasks: the configuration is invalid: %s", error)
                return
            logger.info("pictify-tasks: %s", settings.describe())
            if settings.state_url in (None, MEMORY_STATE_URL):
                _check_memory_state_fits_the_pool(getattr(sender, "pool", None))
            if not settings.api_key:
                logger.error(
                    "pictify-tasks: no API key: every cancel will fail; set pictify_api_key "
                    "(CELERY_PICTIFY_API_KEY under Django) or PICTIFY_API_KEY"
                )

    def _on_worker_shutdown(self, **_: Any) -> None:
        """``worker_shutdown`` / ``worker_process_shutdown``: the fan-out's last try.

        What the background thread still holds is done, what the store or
        broker refused is tried once more; each item still
        not done is logged as an error, so a lost revoke is never silent.
        """
        for app in list(self._apps):
            with logged_not_raised(logger, "draining the backlog at shutdown"):
                runtime = existing_runtime(app)
                if runtime is not None:
                    runtime.fanout.drain()

    def _on_before_task_publish(self, headers: Any = None, **_: Any) -> None:
        """Carry the publishing task's ancestry to the task it publishes (no I/O)."""
        with logged_not_raised(logger, "adding the lineage header"):
            task = current_task._get_current_object() if current_task else None
            if task is None or task.app not in self._apps or not isinstance(headers, dict):
                return
            request = task.request
            if not request.id or request.is_eager:
                return  # not inside a running task
            if task.name == BATCH_ENDED:
                return  # it sends waiting tasks' own messages again, with their own lineage
            lineage = lineage_for_child(request, headers.get("id"))
            if lineage:
                headers[LINEAGE_HEADER] = lineage


def _check_memory_state_fits_the_pool(pool: Any) -> None:
    """Shout when the state is in process memory but the pool runs tasks in other processes.

    A prefork worker's main process hears revokes (listener, signal) while
    its pool processes start batches and run cancels: with ``memory://`` they
    share nothing, so a revoke finds no batch and duplicates are not merged.
    """
    from celery.concurrency.prefork import TaskPool as PreforkPool  # only workers need it

    if isinstance(pool, PreforkPool):
        logger.error(
            "pictify-tasks: the state is in process memory, but this worker runs a prefork "
            "pool (concurrency %s): its pool processes and its main process, which hears "
            "revokes, share nothing, so a revoke cancels no batch a pool process started "
            "and duplicate cancels are not merged. Set pictify_state_url to a Redis URL "
            "(CELERY_PICTIFY_STATE_URL under Django, or PICTIFY_STATE_URL), or run the "
            "worker with --pool threads or --pool solo",
            getattr(pool, "limit", "?"),
        )


#: The consumer bootsteps ``install`` adds to an app's workers.
_STEPS = (RevokeListener, CancelSweep)


def _metrics() -> Any:
    """The metrics module, when prometheus_client is installed (an optional extra)."""
    try:
        from pictify_tasks import metrics
    except ImportError:
        return None
    return metrics


def _uid(handler: Callable[..., None]) -> str:
    owner = getattr(handler, "__self__", None)
    return f"pictify:{type(owner).__name__}.{handler.__name__}"


#: The one integration of this process.
integration = CeleryIntegration()
install = integration.install
uninstall = integration.uninstall
