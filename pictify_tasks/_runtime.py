"""Per-app runtime: settings, the state store and the client, built lazily.

Built on first use rather than at ``install`` time because users often
configure the app after installing, and because a prefork worker must build
its HTTP session in each child, after the fork.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from pictify_tasks.client import PictifyClient
from pictify_tasks.names import CANCEL_BATCH
from pictify_tasks.retry import RetryPolicy
from pictify_tasks.settings import MEMORY_STATE_URL, PictifySettings
from pictify_tasks.store import MemoryStore, RedisStore, StateStore

__all__ = ["Runtime", "runtime_for"]

logger = logging.getLogger("pictify_tasks")

#: A batch whose cancel this process enqueued this recently is not enqueued again.
_RECENT_SECONDS = 10.0

_runtimes: weakref.WeakKeyDictionary[Any, Runtime] = weakref.WeakKeyDictionary()
_runtimes_lock = threading.Lock()


class Runtime:
    """What the tasks and hooks of one Celery app share within a process."""

    def __init__(self, app: Any) -> None:
        self._app_ref = weakref.ref(app)
        self._lock = threading.RLock()
        self._settings: PictifySettings | None = None
        self._store: StateStore | None = None
        self._client: PictifyClient | None = None
        self._client_pid = 0
        self._recent: dict[str, float] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0

    @property
    def app(self) -> Any:
        app = self._app_ref()
        if app is None:
            raise RuntimeError("the Celery app of this runtime is gone")
        return app

    @property
    def settings(self) -> PictifySettings:
        with self._lock:
            if self._settings is None:
                self._settings = PictifySettings.from_app(self.app)
            return self._settings

    @property
    def policy(self) -> RetryPolicy:
        settings = self.settings
        return RetryPolicy(
            max_attempts=settings.cancel_max_attempts,
            backoff_base=settings.retry_backoff_base,
            backoff_max=settings.retry_backoff_max,
        )

    @property
    def store(self) -> StateStore:
        with self._lock:
            if self._store is None:
                self._store = self._make_store()
            return self._store

    @store.setter
    def store(self, store: StateStore) -> None:
        with self._lock:
            self._store = store

    @property
    def client(self) -> PictifyClient:
        """This process's client; a new one after a fork."""
        with self._lock:
            pid = os.getpid()
            if self._client is None or self._client_pid != pid:
                settings = self.settings
                self._client = PictifyClient(
                    settings.require_api_key(),
                    base_url=settings.base_url,
                    timeout=settings.timeout,
                )
                self._client_pid = pid
            return self._client

    def enqueue_cancels(self, batch_ids: list[str]) -> None:
        """Publish one ``pictify.cancel_batch`` per batch not enqueued here lately.

        Several paths (the signal, the listener, the helper) often see the same
        revoke in one process; the ledger would merge their cancels anyway, this
        only spares the broker the duplicates.
        """
        now = time.monotonic()
        with self._lock:
            self._recent = {b: t for b, t in self._recent.items() if now - t < _RECENT_SECONDS}
            fresh = [b for b in batch_ids if b not in self._recent]
            for batch_id in fresh:
                self._recent[batch_id] = now
        if not fresh:
            return
        task = self.app.tasks[CANCEL_BATCH]
        with self.app.producer_or_acquire() as producer:  # one connection for them all
            for batch_id in fresh:
                task.apply_async((batch_id,), producer=producer)

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function`` on this process's background thread; log, never raise.

        Signal handlers run on the worker's event loop: they hand their store
        round trip and publishes over to this thread and return at once.
        """
        with self._lock:
            pid = os.getpid()
            if self._executor is None or self._executor_pid != pid:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pictify-hooks")
                self._executor_pid = pid
            executor = self._executor
        executor.submit(_logged, function, *args)

    def reset(self) -> None:
        """Forget what was built, so that changed settings are read again."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._settings = None
            self._store = None
            self._client = None

    def _make_store(self) -> StateStore:
        url = self.settings.state_url
        if url == MEMORY_STATE_URL:
            return MemoryStore()
        if url:
            return RedisStore.from_url(url)
        logger.warning(
            "pictify-tasks keeps its cancel ledger in process memory because neither "
            "pictify_state_url is set nor the broker is Redis: duplicate cancels are only "
            "merged within one worker process. Set pictify_state_url to a Redis URL."
        )
        return MemoryStore()


def _logged(function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception:
        logger.exception("pictify-tasks: %s failed", getattr(function, "__name__", function))


def runtime_for(app: Any) -> Runtime:
    """The runtime of ``app`` in this process, created on first use."""
    with _runtimes_lock:
        runtime = _runtimes.get(app)
        if runtime is None:
            runtime = _runtimes[app] = Runtime(app)
        return runtime
