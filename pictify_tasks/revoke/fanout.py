"""From revoked ids to enqueued cancels: one store round trip, then one publish per batch.

Every way of noticing a revoke (the ``task_revoked`` signal, the control
listener, :func:`~pictify_tasks.revoke_workflow`, ``pictify.cancel_workflow``)
ends in :meth:`Fanout.cancel_ids`. The ledger makes the cancels exactly one
per batch however many paths fire; the fan-out spares the broker the
duplicates one process would publish within a few seconds, and keeps what it
could not do (the store or the broker down) to do it again later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

from pictify_tasks._guard import logged_not_raised
from pictify_tasks.revoke.backlog import Backlog
from pictify_tasks.revoke.links import Scope
from pictify_tasks.settings import PictifySettings
from pictify_tasks.store.base import StateStore
from pictify_tasks.store.records import WantedCancel

__all__ = ["Fanout", "Publisher"]

logger = logging.getLogger("pictify_tasks.revoke")

#: A batch whose cancel this process enqueued this recently is not enqueued again.
RECENT_SECONDS = 10.0
#: How many revoked ids :meth:`Fanout.handle_revoke` remembers handling (and in which readings).
HANDLED_MEMO = 1024
#: The narrowest reading of a revoke (the catch-up's): a remembered reading of the same id
#: covers it, since a batch's task-scope links are among its workflow-scope ones and a
#: batch linked later under a remembered id is cancelled as it is linked.
_NARROWEST = (Scope.TASK, False)


class Publisher(Protocol):
    """Publishes the package's cancel tasks (the seam tests replace)."""

    def cancels(self, wanted: Sequence[WantedCancel]) -> None:
        """Record the cancels as wanted, then one ``pictify.cancel_batch`` per cancel."""

    def publish(self, wanted: Sequence[WantedCancel]) -> None:
        """One ``pictify.cancel_batch`` per cancel already recorded as wanted."""

    def starts(self, start_ids: Sequence[str]) -> None:
        """One ``pictify.cancel_start`` per start whose batch id is not known."""


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
        self._handled: OrderedDict[str, set[tuple[Scope | None, bool]]] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self.backlog = Backlog()

    def cancel_ids(
        self,
        ids: Iterable[str],
        scope: Scope | None = None,
        *,
        remember: bool = True,
        reason: str | None = None,
    ) -> list[str]:
        """Cancel the running batches linked under any of ``ids``; return their ids.

        With ``remember`` the ids are remembered as revoked for
        ``pictify_link_ttl``, so a batch linked under one of them later is
        cancelled as soon as it is linked. Raises when the store cannot be
        reached (see :meth:`handle_revoke` for the caller that must not).
        """
        unique = list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
        if not unique:
            return []
        settings = self._settings()
        ttl = settings.link_ttl if remember else None
        found = self._store().revoke_ids(unique, scope or settings.revoke_scope, ttl)
        if found.batches or found.starts:
            logger.info(
                "revoke of %s: cancelling batches %s%s",
                unique,
                found.batches,
                f" and the starts {found.starts}" if found.starts else "",
            )
        if found.batches:
            why = reason or f"revoked: {unique[0]}"
            self.enqueue(found.batches, reason=why, origins=found.origins)
        if found.starts:
            self._publish_or_keep(lambda: self.publisher.starts(found.starts), "starts")
        return found.batches

    def handle_revoke(
        self,
        ids: Sequence[str],
        scope: Scope | None = None,
        remember: bool = True,
        reason: str | None = None,
    ) -> bool:
        """:meth:`cancel_ids`, or keep the ids to try again when it fails; never raises.

        An id this process handled (or kept) already in the same scope is
        skipped: the signal and the listener both hear one revoke. While
        earlier revokes wait in the backlog (the store is down) this one
        joins them at the back, untried: their order is kept and the store
        is not asked again for each. Returns whether the revoke was handled
        now (``False``: kept for later).
        """
        fresh = self._first_time(ids, scope, remember)
        if not fresh:
            return True

        def cancel() -> None:
            self.cancel_ids(fresh, scope, remember=remember, reason=reason)

        if len(self.backlog):
            logger.info("revoke of %s kept behind the ones waiting for the store", fresh)
            self._keep(f"revoke of {fresh}", cancel)
            return False
        try:
            cancel()
            return True
        except Exception as exc:
            logger.warning("revoke of %s kept to try again: %s", fresh, exc)
            self._keep(f"revoke of {fresh}", cancel)
            return False

    def _first_time(self, ids: Sequence[str], scope: Scope | None, remember: bool) -> list[str]:
        """The ids not handled yet in this reading (scope, ``remember``); now marked handled.

        An id handled in a remembered reading was handled in the narrowest one too.
        Marked before they are handled: one that fails is kept in the backlog,
        which does it, so it is not handled again either.
        """
        reading = (scope, remember)
        fresh = []
        with self._lock:
            for task_id in dict.fromkeys(ids):
                readings = self._handled.setdefault(task_id, set())
                self._handled.move_to_end(task_id)
                remembered = any(kept for _, kept in readings)
                if reading in readings or (remembered and reading == _NARROWEST):
                    continue
                readings.add(reading)
                fresh.append(task_id)
            while len(self._handled) > HANDLED_MEMO:
                self._handled.popitem(last=False)
        return fresh

    def enqueue(
        self,
        batch_ids: Sequence[str],
        *,
        reason: str = "",
        origins: Mapping[str, tuple[str | None, str | None]] | None = None,
    ) -> None:
        """Publish a cancel per batch not enqueued by this process lately.

        Each is recorded as wanted first (a second line against a lost
        message); a publish that fails is kept and tried again. ``origins``
        (batch -> its workflow's root, the task that started it) places each
        cancel in its workflow.
        """
        now = self._clock()
        with self._lock:
            self._recent = {b: t for b, t in self._recent.items() if now - t < RECENT_SECONDS}
            fresh = [b for b in dict.fromkeys(batch_ids) if b not in self._recent]
            for batch_id in fresh:
                self._recent[batch_id] = now
        if fresh:
            asked_at = time.time()
            origins = origins or {}
            wanted = [
                WantedCancel(b, asked_at, reason, *origins.get(b, (None, None))) for b in fresh
            ]
            self._publish_or_keep(lambda: self.publisher.cancels(wanted), f"cancels of {fresh}")

    def in_background(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``function(*args, **kwargs)`` on this process's background thread; log, never raise.

        Signal handlers run on the worker's event loop: they hand their store
        round trip and publishes to this thread and return at once.
        """
        with self._lock:
            pid = os.getpid()
            if self._executor is None or self._executor_pid != pid:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pictify-hooks")
                self._executor_pid = pid
            executor = self._executor
        executor.submit(_run_logged, function, *args, **kwargs)

    def drain(self) -> None:
        """At worker shutdown: finish what the background thread was handed, then the backlog.

        A revoke a signal handed over just before shutdown is done (or kept)
        first, so the backlog's last try covers it too.
        """
        with self._lock:
            executor = self._executor if self._executor_pid == os.getpid() else None
            self._executor = None
        if executor is not None:
            executor.shutdown(wait=True)
        self.backlog.drain()

    def _publish_or_keep(self, publish: Callable[[], None], what: str) -> None:
        try:
            publish()
        except Exception as exc:
            logger.warning("publishing %s failed, kept to try again: %s", what, exc)
            self._keep(f"publishing {what}", publish)

    def _keep(self, what: str, action: Callable[[], object]) -> None:
        """Keep ``action`` in the backlog until a cancel asked now would be past its deadline."""
        try:
            keep_for = self._settings().cancel_deadline
        except Exception:  # settings that cannot be read must not lose the work
            keep_for = PictifySettings.cancel_deadline
        self.backlog.keep(what, action, keep_for=keep_for)


def _run_logged(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    with logged_not_raised(logger, getattr(function, "__name__", repr(function))):
        function(*args, **kwargs)
