"""Work the revoke side could not do yet (store or broker down), kept and tried again.

A revoke heard while Redis is unreachable must not be lost: it is kept here,
in the worker, and tried again with backoff until it succeeds. The backlog is
bounded; when it is full the oldest item is dropped with an error in the log
(the sweep and the listener's catch-up are the lines behind it).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import Callable

from pictify_tasks.backoff import backoff_delay

__all__ = ["Backlog"]

logger = logging.getLogger("pictify_tasks.revoke")

FIRST_DELAY = 0.5
MAX_DELAY = 10.0
MAX_ITEMS = 10_000


class Backlog:
    """A bounded queue of (what, action) retried on a thread of its own until each succeeds."""

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self._items: deque[tuple[str, Callable[[], object]]] = deque()
        self._max_items = max_items
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = threading.Event()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def keep(self, what: str, action: Callable[[], object]) -> None:
        """Keep ``action`` to run again later (``what`` names it in the log)."""
        with self._cond:
            if len(self._items) >= self._max_items:
                dropped, _ = self._items.popleft()
                logger.error("pictify-tasks: backlog full, dropped %s", dropped)
            self._items.append((what, action))
            self._cond.notify_all()
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="pictify-backlog", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            with self._cond:
                while not self._items and not self._stopping.is_set():
                    self._cond.wait()
                batch = list(self._items)
                self._items.clear()
            wait = backoff_delay(
                failures + 1, base=self._first_delay, cap=self._max_delay, jitter=0.5
            )
            if self._stopping.wait(wait):
                return
            still = self._try(batch)
            failures = failures + 1 if still else 0
            with self._cond:
                self._items.extendleft(reversed(still))

    def _try(
        self, batch: list[tuple[str, Callable[[], object]]]
    ) -> list[tuple[str, Callable[[], object]]]:
        still = []
        for what, action in batch:
            try:
                action()
                logger.info("pictify-tasks: %s done after a retry", what)
            except Exception as exc:
                logger.warning("pictify-tasks: %s failed again (%s); kept", what, exc)
                still.append((what, action))
        return still
