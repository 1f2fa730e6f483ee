"""From revoked ids to enqueued cancels: one store round trip, then one publish per batch.

Every way of noticing a revoke (the ``task_revoked`` signal, the control
listener, :func:`~pictify_tasks.revoke_workflow`, ``pictify.cancel_workflow``)
ends in :meth:`Fanout.cancel_ids`. The ledger makes the cancels exactly one
per batch however many paths fire; the fan-out only spares the broker the
duplicates one process would publish within a few seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

from pictify_tasks._guard import logged_not_raised
from pictify_tasks.names import CANCEL_BATCH
from pictify_tasks.revoke.links import Scope
from pictify_tasks.settings import PictifySettings
from pictify_tasks.store.base import StateStore

__all__ = ["CeleryPublisher", "Fanout", "Publisher"]

logger = logging.getLogger("pictify_tasks.revoke")

#: A batch whose cancel this process enqueued this recently is not enqueued again.
RECENT_SECONDS = 10.0


class Publisher(Protocol):
    """Publishes one ``pictify.cancel_batch`` per batch id (the seam tests replace)."""

    def __call__(self, batch_ids: Sequence[str]) -> None: ...


class CeleryPublisher:
    """Publishes cancel tasks of ``app`` over one producer (one connection for them all).

    It holds the app weakly: the runtime that owns it lives as long as the app.
    """

    def __init__(self, app: Any) -> None:
        self._app = weakref.ref(app)

    def __call__(self, batch_ids: Sequence[str]) -> None:
        app = self._app()
        if app is None:
            raise RuntimeError("the Celery app is gone")
        task = app.tasks[CANCEL_BATCH]
        with app.producer_or_acquire() as producer:
            for batch_id in batch_ids:
                task.apply_async((batch_id,), producer=producer)


class Fanout:
    """The revoke side's work for one app in one process.

    ``store`` and ``settings`` are read on each use, so that settings re-read
    after a change take effect; ``publisher`` is what publishes the cancels.
    """

    def __init__(
        self,
        *,
        store: Callable[[], StateStore],
        settings: Callable[[], PictifySettings],
        publisher: Publisher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self.publisher = publisher
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[str, float] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0

    def cancel_ids(self, ids: Iterable[str], scope: Scope | None = None) -> list[str]:
        """Cancel the running batches linked under any of ``ids``; return their ids.

        The ids are remembered as revoked for ``pictify_link_ttl``, so a batch
        linked under one of them later is cancelled as soon as it is linked.
        """
        unique = list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
        if not unique:
            return []
        settings = self._settings()
        batches = self._store().revoke_ids(
            unique, scope or settings.revoke_scope, settings.link_ttl
        )
        if batches:
            logger.info("revoke of %s: cancelling batches %s", unique, batches)
            self.enqueue(batches)
        return batches

    def enqueue(self, batch_ids: Sequence[str]) -> None:
        """Publish a cancel per batch not enqueued by this process lately."""
        now = self._clock()
        with self._lock:
            self._recent = {b: t for b, t in self._recent.items() if now - t < RECENT_SECONDS}
            fresh = [b for b in dict.fromkeys(batch_ids) if b not in self._recent]
            for batch_id in fresh:
                self._recent[batch_id] = now
        if fresh:
            self.publisher(fresh)

    def in_background(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on this process's background thread; log, never raise.

        Signal handlers run on the worker's event loop: they hand their store
        round trip and publishes to this thread and return at once.
        """
        with self._lock:
            pid = os.getpid()
            if self._executor is None or self._executor_pid != pid:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pictify-hooks")
                self._executor_pid = pid
            executor = self._executor
        executor.submit(_run_logged, function, *args)


def _run_logged(function: Callable[..., Any], *args: Any) -> None:
    with logged_not_raised(logger, getattr(function, "__name__", repr(function))):
        function(*args)
