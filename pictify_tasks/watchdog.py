"""One daemon thread per process that ends HTTP calls past their deadline.

``requests``' (and urllib3's) ``timeout`` bounds each socket operation, not
the call: an answer trickled a byte at a time never times out. A call
registers a :class:`Watch` (its deadline, and the connection the pool lends
it); at the deadline the watchdog shuts that connection's socket, wherever
the call is, and the blocked read fails at once.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Watch", "current_watch", "watched"]

#: How soon a watchdog that found no socket to shut looks again.
_RECHECK = 0.05

logger = logging.getLogger("pictify_tasks.transport")


class Watch:
    """One call's deadline and the connection it holds; shuts that socket when late."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.fired = False
        self.done = False
        self._lock = threading.Lock()
        self._connection: Any = None

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection

    def detach(self, connection: Any) -> None:
        with self._lock:
            if self._connection is connection:
                self._connection = None

    def start(self) -> None:
        _WATCHDOG.watch(self, self.deadline)

    def stop(self) -> None:
        with self._lock:
            self.done = True

    def fire(self) -> float | None:
        """Shut the call's socket; or, with no socket yet, when to look again."""
        with self._lock:
            if self.done:
                return None
            self.fired = True
            shutdown = _shutdown_of(getattr(self._connection, "sock", None))
            if shutdown is None:
                return time.monotonic() + _RECHECK  # still connecting: look again shortly
            # Under the lock: the pool cannot take the connection back meanwhile.
            with contextlib.suppress(OSError, ValueError):
                shutdown(socket.SHUT_RDWR)
            return None


class _Watchdog:
    """One daemon thread per process for every call's deadline.

    A thread per call (a ``threading.Timer``) costs ~0.1 ms of CPU to start,
    as much as a Redis round trip; here a call only pushes its deadline on a
    heap. Calls that ended are dropped from the top as new ones come, so the
    heap holds about as many entries as calls in flight. The thread is woken
    only for a deadline sooner than the one it sleeps until: calls with the
    same budget come in deadline order, so a call costs no thread switch.
    Rebuilt in a forked child (the parent's thread does not exist there).
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork to survive
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        #: When the thread's sleep ends (``math.inf``: no deadline); ``None`` while it is awake.
        self._asleep_until: float | None = None

    def watch(self, watch: Watch, at: float) -> None:
        with self._cond:
            while self._heap and self._heap[0][2].done:
                heapq.heappop(self._heap)
            heapq.heappush(self._heap, (at, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                # Also when an earlier start failed ("can't start new thread"): a
                # thread that never ran must not leave every later call unwatched.
                self._thread = threading.Thread(
                    target=self._run, name="pictify-transport-watchdog", daemon=True
                )
                self._thread.start()
            elif self._asleep_until is not None and at < self._asleep_until:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                watch = self._next_due()
            try:
                again = watch.fire()
            except Exception:
                # One socket that cannot be shut must not end the thread, and with it
                # the deadline of every later call in this process. The call itself
                # still ends as timed out (it is marked fired), when its reads end.
                logger.exception("the transport watchdog could not end a late call")
                continue
            if again is not None:
                self.watch(watch, again)

    def _next_due(self) -> Watch:
        """Wait (the condition held) for the first call past its deadline that has not ended."""
        while True:
            while self._heap and self._heap[0][2].done:
                heapq.heappop(self._heap)
            wait = self._heap[0][0] - time.monotonic() if self._heap else None
            if wait is not None and wait <= 0:
                return heapq.heappop(self._heap)[2]
            self._asleep_until = math.inf if wait is None else self._heap[0][0]
            self._cond.wait(wait)
            self._asleep_until = None


_WATCHDOG = _Watchdog()


def _shutdown_of(sock: Any) -> Any:
    """The ``shutdown`` of a socket, of a TLS socket, or of a TLS-in-TLS transport's socket."""
    if sock is None:
        return None
    return getattr(sock, "shutdown", None) or getattr(
        getattr(sock, "socket", None), "shutdown", None
    )


_local = threading.local()


def current_watch() -> Watch | None:
    watch: Watch | None = getattr(_local, "watch", None)
    return watch


@contextlib.contextmanager
def watched(budget: float) -> Iterator[Watch]:
    """A watch for the call this thread is about to make."""
    watch = Watch(budget)
    outer = current_watch()
    _local.watch = watch
    try:
        watch.start()  # inside: a start that fails still ends the watch, and restores ``outer``
        yield watch
    finally:
        watch.stop()
        _local.watch = outer
