"""Work the revoke side could not do yet (store or broker down), kept and tried again.

A revoke heard while Redis is unreachable must not be lost: it is kept here,
in the worker, and tried again with backoff, in the order it came. A round
stops at the first failure (the store is still down: do not hammer it). The
backlog is bounded, and an item not done by its deadline is dropped; both
drops are logged as errors, never silent (a dropped publish whose wanted
record was written is re-sent by the sweep). At worker shutdown :meth:`Backlog.drain`
tries what is left once and logs each item that is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Callable

from pictify_tasks.backoff import backoff_delay

__all__ = ["Backlog"]

logger = logging.getLogger("pictify_tasks.revoke")

FIRST_DELAY = 0.5
MAX_DELAY = 10.0
MAX_ITEMS = 10_000


@dataclass(frozen=True, eq=False)
class _Item:
    what: str
    action: Callable[[], object]
    deadline: float


class Backlog:
    """A bounded queue of actions retried in order on a thread of its own until each succeeds."""

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items: deque[_Item] = deque()
        self._max_items = max_items
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._clock = clock
        self._cond = threading.Condition()
        self._round_lock = threading.Lock()  # one round at a time: the thread's or drain's
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        _backlogs.add(self)

    def _forget_the_parents_work(self) -> None:
        """In a forked child: the parent's items are the parent's, and so are its locks.

        A prefork pool process must neither do its parent's items (nor log
        them as lost at its exit), nor wait on a lock the parent's backlog
        thread held at the fork (that thread does not exist in the child).
        """
        stopped = self._stopping.is_set()
        self._items = deque()
        self._cond = threading.Condition()
        self._round_lock = threading.Lock()
        self._thread = None
        self._stopping = threading.Event()
        if stopped:
            self._stopping.set()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def keep(self, what: str, action: Callable[[], object], *, keep_for: float) -> None:
        """Keep ``action`` to run again, for at most ``keep_for`` seconds (``what`` names it).

        After :meth:`drain` nothing runs it any more: it is logged as lost at once.
        """
        if self._stopping.is_set():
            logger.error("pictify-tasks: %s not done before the worker stopped: lost", what)
            return
        with self._cond:
            if len(self._items) >= self._max_items:
                dropped = self._items.popleft()
                logger.error("pictify-tasks: backlog full, dropped %s", dropped.what)
            self._items.append(_Item(what, action, self._clock() + keep_for))
            self._cond.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="pictify-backlog", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def drain(self) -> None:
        """At shutdown: stop retrying, try what is left once, log each item that is lost."""
        self.stop()
        with self._round_lock:
            self._round()
            with self._cond:
                lost = list(self._items)
                self._items.clear()
        for item in lost:
            logger.error("pictify-tasks: %s not done before the worker stopped: lost", item.what)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            with self._cond:
                while not self._items and not self._stopping.is_set():
                    self._cond.wait()
            wait = backoff_delay(
                failures + 1, base=self._first_delay, cap=self._max_delay, jitter=0.5
            )
            if self._stopping.wait(wait):
                return
            with self._round_lock:
                failures = 0 if self._round() else failures + 1

    def _round(self) -> bool:
        """Do the items in order, dropping those past their deadline; stop at a failure.

        Returns whether the backlog was emptied.
        """
        while True:
            with self._cond:
                self._drop_expired()
                if not self._items:
                    return True
                item = self._items[0]
            try:
                item.action()
            except Exception as exc:
                logger.warning("pictify-tasks: %s failed again (%s); kept", item.what, exc)
                return False
            logger.info("pictify-tasks: %s done after a retry", item.what)
            with self._cond:
                if self._items and self._items[0] is item:  # not dropped by a full backlog
                    self._items.popleft()

    def _drop_expired(self) -> None:
        now = self._clock()
        expired = [item for item in self._items if item.deadline < now]
        for item in expired:
            self._items.remove(item)
            logger.error(
                "pictify-tasks: %s dropped: still not done at its deadline "
                "(the state store or broker kept refusing it)",
                item.what,
            )


#: Every backlog of this process, so that a forked child can forget its parent's work.
_backlogs: weakref.WeakSet[Backlog] = weakref.WeakSet()


def _forget_the_parents_work() -> None:
    for backlog in list(_backlogs):
        backlog._forget_the_parents_work()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_the_parents_work)
