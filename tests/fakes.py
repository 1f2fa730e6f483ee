"""In-process stand-ins: an app on the memory broker, and a "current" task as a worker has."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery._state import _task_stack

import pictify_tasks
from pictify_tasks.ratelimit import Priority, RateLimitInfo
from pictify_tasks.revoke.fanout import Fanout
from pictify_tasks.settings import PictifySettings
from pictify_tasks.store import StateStore, StateStoreError
from pictify_tasks.store.records import WantedCancel
from pictify_tasks.testing import PictifyEmulator


def noop(*args: Any) -> None:
    """The body of the plain tasks the tests pretend to run."""


def memory_app(prefix: str, *task_names: str, installed: bool = True) -> Celery:
    """An app on the memory broker with the state in memory and plain tasks ``task_names``."""
    app = Celery(
        f"{prefix}-{uuid.uuid4().hex[:6]}",
        broker="memory://",
        backend="cache+memory://",
        set_as_current=False,
    )
    app.conf.pictify_state_url = "memory://"
    for name in task_names:
        app.task(name=name, shared=False)(noop)
    if installed:
        pictify_tasks.install(app)
    return app


@contextmanager
def running(task: Any, **fields: Any) -> Iterator[Any]:
    """Make ``task`` the current task with a request of ``fields``, as a worker does."""
    task.push_request(**{"called_directly": False, **fields})
    _task_stack.push(task)
    try:
        yield task.request
    finally:
        _task_stack.pop()
        task.pop_request()


class RecordingPublisher:
    """A publisher that records what it was asked to publish, and on which thread."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.recorded: list[str] = []  # the batches of cancels() (record, then publish)
        self.wanted: list[WantedCancel] = []
        self.start_calls: list[list[str]] = []
        self.threads: list[str] = []
        self.called = threading.Event()

    def cancels(self, wanted: Sequence[WantedCancel]) -> None:
        self.recorded.extend(w.batch_id for w in wanted)
        self.publish(wanted)

    def publish(self, wanted: Sequence[WantedCancel]) -> None:
        self.calls.append([w.batch_id for w in wanted])
        self.wanted.extend(wanted)
        self._called()

    def starts(self, start_ids: Sequence[str]) -> None:
        self.start_calls.append(list(start_ids))
        self._called()

    def _called(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.called.set()


def cancelled_result(batch_id: str, **fields: Any) -> dict[str, Any]:
    """``pictify.cancel_batch``'s result for a batch its first attempt stopped; ``fields`` differ.

    The public result pinned in one place: exactly what ``CancelBatchResult`` declares.
    """
    return {
        "batch_id": batch_id,
        "status": "cancelled",
        "outcome": "cancelled",
        "attempts": 1,
        "message": "Batch cancelled",
        "items_not_rendered": None,
        "replayed": False,
        **fields,
    }


def memory_fanout(store: StateStore, publisher: Any) -> Fanout:
    """A fan-out on ``store`` with default settings, publishing through ``publisher``."""
    settings = PictifySettings(state_url="memory://")
    return Fanout(store=lambda: store, settings=lambda: settings, publisher=publisher)


def eager_app(emulator: PictifyEmulator, **conf: Any) -> Celery:
    """An installed app that runs tasks eagerly against ``emulator`` (uninstall it after).

    Eager errors propagate; the state is in memory; ``conf`` adds or overrides.
    """
    app = Celery(f"eager-{uuid.uuid4().hex[:6]}", set_as_current=False)
    defaults = {
        "task_always_eager": True,
        "task_eager_propagates": True,
        "pictify_api_key": emulator.api_key,
        "pictify_base_url": emulator.base_url,
        "pictify_state_url": "memory://",
    }
    app.conf.update({**defaults, **conf})
    pictify_tasks.install(app)
    return app


def retrying_app(emulator: PictifyEmulator, **conf: Any) -> Celery:
    """:func:`eager_app` whose retries wait hundredths of a second; ``conf`` adds or overrides."""
    fast = {"pictify_retry_backoff_base": 0.01, "pictify_retry_backoff_max": 0.02}
    return eager_app(emulator, **{**fast, **conf})


class Limiter:
    """A limiter whose store is down ``down`` times, then makes requests wait ``wait`` s.

    ``waits``: only that many requests wait, the later ones go at once (``None``: all
    wait). ``asks`` lists the priorities asked for, in order.
    """

    def __init__(self, *, down: int = 0, wait: float = 0.0, waits: int | None = None) -> None:
        self.down, self.wait, self.waits = down, wait, waits
        self.asks: list[Priority] = []

    def acquire(self, priority: Priority) -> float:
        self.asks.append(priority)
        if self.down > 0:
            self.down -= 1
            raise StateStoreError("state store: ConnectionError: refused")
        if self.waits is None:
            return self.wait
        if self.waits > 0:
            self.waits -= 1
            return self.wait
        return 0.0

    def observe(self, status: int, info: RateLimitInfo) -> None:
        """Nothing to learn."""


class Heard:
    """Records what ``signal`` was sent with, while used as a context manager."""

    def __init__(self, signal: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self._signal = signal

    def __call__(self, sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    def __enter__(self) -> Heard:
        self._signal.connect(self, weak=False, dispatch_uid=f"heard-{id(self)}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._signal.disconnect(self, dispatch_uid=f"heard-{id(self)}")
