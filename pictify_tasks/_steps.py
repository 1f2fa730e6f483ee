"""A worker bootstep that runs one daemon thread of the package's, for the worker's life.

The revoke listener and the sweep both keep a thread of their own across
consumer restarts (their own connections did not go anywhere) and stop it
only when the worker shuts down.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps

__all__ = ["ThreadStep"]


class ThreadStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts :meth:`make_thread`'s thread once; stops it at shutdown (its ``stopping``)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)  # after Mingle

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._thread: Any = None

    def make_thread(self, parent: Any) -> threading.Thread:
        """The thread to run; it must have a ``stopping`` :class:`threading.Event`."""
        raise NotImplementedError

    def start(self, parent: Any) -> None:
        if self._thread is not None and self._thread.is_alive():
            return  # a consumer restart: the thread keeps going
        self._thread = self.make_thread(parent)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        """Keep going across consumer restarts; :meth:`shutdown` ends it."""

    def shutdown(self, parent: Any) -> None:
        if self._thread is not None:
            self._thread.stopping.set()
            self._thread.join(timeout=5.0)
            self._thread = None
