"""Per app and per process: settings, the state store, the limiter, the client, the fan-out.

Built on first use rather than at ``install`` time because users often
configure the app after installing, and because a prefork worker must build
its HTTP session in each child, after the fork.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from pictify_tasks.client import PictifyClient
from pictify_tasks.limiter import LimiterConfig, bucket_for
from pictify_tasks.publisher import CeleryPublisher
from pictify_tasks.ratelimit import RateLimiter, RateLimitInfo, Unlimited
from pictify_tasks.retry import RetryPolicy
from pictify_tasks.revoke.fanout import Fanout
from pictify_tasks.settings import MEMORY_STATE_URL, PictifySettings
from pictify_tasks.store import MemoryStore, RedisStore, StateStore

__all__ = ["Runtime", "existing_runtime", "runtime_for"]

logger = logging.getLogger("pictify_tasks")

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
        self._limiter: RateLimiter | None = None
        #: Publishes the package's cancel tasks (the fan-out's, the sweep's, the CLI's).
        self.publisher = CeleryPublisher(app, lambda: self.store, lambda: self.settings.wanted_ttl)
        self.fanout = Fanout(
            store=lambda: self.store, settings=lambda: self.settings, publisher=self.publisher
        )

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
            deadline=settings.cancel_deadline,
            max_attempts=settings.cancel_max_attempts,
            backoff_base=settings.retry_backoff_base,
            backoff_max=settings.retry_backoff_max,
            retry_after_max=settings.retry_after_max,
        )

    @property
    def store(self) -> StateStore:
        with self._lock:
            if self._store is None:
                self._store = self._make_store()
            return self._store

    @property
    def limiter(self) -> RateLimiter:
        """Asked for a token before every request: one per API key, shared through the store.

        See :mod:`pictify_tasks.limiter`. Without an API key there is nothing
        to key it by, and no request is sent either.
        """
        with self._lock:
            if self._limiter is None:
                settings = self.settings
                self._limiter = (
                    self.store.rate_limiter(
                        bucket_for(settings.api_key),
                        LimiterConfig.from_rate(settings.rate_limit, settings.retry_after_max),
                    )
                    if settings.api_key
                    else Unlimited()
                )
            return self._limiter

    def _heard(self, status: int, info: RateLimitInfo) -> None:
        """Every answer's rate-limit headers go to the limiter (the client's ``on_response``)."""
        self.limiter.observe(status, info)

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
                    on_response=self._heard,
                )
                self._client_pid = pid
            return self._client

    def reset(self) -> None:
        """Forget what was built, so that changed settings are read again."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._store is not None:
                self._store.close()
            self._settings = None
            self._store = None
            self._client = None
            self._limiter = None

    def reload(self) -> PictifySettings:
        """Forget what was built and read the settings again now.

        Reading now, not on next use, makes a bad value fail where it was set.
        """
        self.reset()
        return self.settings

    def _make_store(self) -> StateStore:
        url = self.settings.state_url
        if url == MEMORY_STATE_URL:
            return MemoryStore()
        if url:
            return RedisStore.from_url(
                url, prefix=self.settings.state_prefix, cluster=self.settings.state_cluster
            )
        logger.warning(
            "pictify-tasks keeps its state (the cancel ledger, the batches' links) in this "
            "process's memory: pictify_state_url is not set and the broker is not Redis. "
            "Nothing is shared with other processes: a revoke heard in one finds no batch "
            "started in another, and duplicate cancels are merged within one process only. "
            "Set pictify_state_url to a Redis URL (memory:// keeps it in memory on purpose)."
        )
        return MemoryStore()


def runtime_for(app: Any) -> Runtime:
    """The runtime of ``app`` in this process, created on first use."""
    with _runtimes_lock:
        runtime = _runtimes.get(app)
        if runtime is None:
            runtime = _runtimes[app] = Runtime(app)
        return runtime


def existing_runtime(app: Any) -> Runtime | None:
    """The runtime of ``app`` in this process if one was created (shutdown builds none)."""
    with _runtimes_lock:
        return _runtimes.get(app)
