"""Cleanup beyond revoke: a batch whose owner failed, timed out or was lost stops billing.

``pictify_cancel_on`` (and a task's own ``pictify_cancel_on`` option or
message header) names the triggers. ``revoke`` is the revoke side's; this
module adds, on Celery's ``task_failure`` (sent once a task has failed for
good, never for a retry, and for a lost worker only when the message will
not be redelivered):

- ``failure``: the task that started or tracked a batch failed: its batches
  (and its descendants') are cancelled;
- ``time_limit``: the same, only when the failure is a soft or hard time limit;
- ``worker_lost``: the same, only when its worker died or was shut down cold;
- ``chain_failure``: a task failed, so its chain's earlier steps' batches are
  cancelled too (in workflow scope a batch is linked under the ids of the
  chain's later steps).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

from pictify_tasks._guard import logged_not_raised
from pictify_tasks._runtime import runtime_for
from pictify_tasks.revoke.links import Scope
from pictify_tasks.triggers import Trigger, parse_cancel_on

__all__ = ["CANCEL_ON_HEADER", "CleanupTriggers", "failure_kind"]

logger = logging.getLogger("pictify_tasks.cleanup")

#: A task's own triggers: the ``pictify_cancel_on`` task option, or this message header.
CANCEL_ON_HEADER = "pictify_cancel_on"
_REMEMBERED = 10_000


def failure_kind(exception: BaseException | None) -> Trigger:
    """Which trigger a failure answers: a time limit, a lost worker, or any failure."""
    if isinstance(exception, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        return Trigger.TIME_LIMIT
    if isinstance(exception, WorkerLostError):
        return Trigger.WORKER_LOST
    return Trigger.FAILURE


class CleanupTriggers:
    """The ``task_received`` and ``task_failure`` handlers of the cleanup triggers."""

    def __init__(self, installed: Callable[[Any], bool]) -> None:
        self._installed = installed
        self._lock = threading.Lock()
        # Task id -> the triggers its message carried: a hard time limit or a lost
        # worker is reported in the main process, where the request is gone.
        self._headers: OrderedDict[str, frozenset[Trigger]] = OrderedDict()

    def on_task_received(self, request: Any = None, **_: Any) -> None:
        with logged_not_raised(logger, "reading a task's cleanup triggers"):
            headers = getattr(request, "request_dict", None) or {}
            value = headers.get(CANCEL_ON_HEADER) if isinstance(headers, dict) else None
            task_id = getattr(request, "id", None)
            if value is None or not isinstance(task_id, str):
                return
            with self._lock:
                self._headers[task_id] = parse_cancel_on(value)
                while len(self._headers) > _REMEMBERED:
                    self._headers.popitem(last=False)

    def on_task_failure(
        self,
        sender: Any = None,
        task_id: Any = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        """A task failed for good: cancel what its triggers say, on the background thread."""
        with logged_not_raised(logger, "handling task_failure"):
            app = getattr(sender, "app", None)
            if app is None or not self._installed(app) or not isinstance(task_id, str):
                return
            runtime = runtime_for(app)
            triggers = self._triggers(sender, task_id, runtime.settings.cancel_on)
            kind = failure_kind(exception)
            if kind in triggers:
                trigger = kind
            elif Trigger.FAILURE in triggers:
                trigger = Trigger.FAILURE
            elif Trigger.CHAIN_FAILURE in triggers:
                trigger = Trigger.CHAIN_FAILURE
            else:
                return
            # Its own batches (and its descendants'); with chain_failure also the
            # chain's earlier steps' (linked under this task's id in workflow scope).
            scope = Scope.WORKFLOW if Trigger.CHAIN_FAILURE in triggers else Scope.TASK
            reason = f"{trigger.value}: {task_id} {type(exception).__name__}"
            fanout = runtime.fanout
            fanout.in_background(fanout.handle_revoke, [task_id], scope, False, reason)

    def _triggers(self, task: Any, task_id: str, default: frozenset[Trigger]) -> frozenset[Trigger]:
        """The message's header, else the task's option, else the app's setting."""
        with self._lock:
            remembered = self._headers.pop(task_id, None)
        if remembered is not None:
            return remembered
        headers = getattr(getattr(task, "request", None), "headers", None)
        if isinstance(headers, dict) and headers.get(CANCEL_ON_HEADER) is not None:
            return parse_cancel_on(headers[CANCEL_ON_HEADER])
        option = getattr(task, "pictify_cancel_on", None)
        return parse_cancel_on(option) if option is not None else default
