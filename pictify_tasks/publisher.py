"""Publishing the package's own cancel tasks, with the cancel recorded as wanted first.

Recording first makes the sweep a second line against a lost message; it is
not a gate: when the store cannot be written the task is still published and
the missing record is logged.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any, Callable

from pictify_tasks.names import ASKED_AT_HEADER, CANCEL_BATCH, CANCEL_START
from pictify_tasks.store.base import StateStore, StateStoreError
from pictify_tasks.store.records import WantedCancel

__all__ = ["CeleryPublisher", "record_wanted"]

logger = logging.getLogger("pictify_tasks.publisher")


def record_wanted(store: StateStore, wanted: Sequence[WantedCancel], ttl: int) -> None:
    """Record the cancels as wanted; log (never raise) when the store is down."""
    try:
        store.want_cancels(wanted, ttl)
    except StateStoreError as exc:
        logger.error(
            "pictify-tasks: cancels of %s published without a wanted record (%s): "
            "the sweep cannot re-send them if their messages are lost",
            [w.batch_id for w in wanted],
            exc,
        )


class CeleryPublisher:
    """Publishes cancel tasks of ``app`` over one producer (one connection for them all).

    It holds the app weakly: the runtime that owns it lives as long as the app.
    ``wanted_ttl`` says how long a wanted record is kept (the cancel's deadline
    and a margin).
    """

    def __init__(
        self, app: Any, store: Callable[[], StateStore], wanted_ttl: Callable[[], int]
    ) -> None:
        self._app = weakref.ref(app)
        self._store = store
        self._wanted_ttl = wanted_ttl

    def cancels(
        self,
        wanted: Sequence[WantedCancel],
        published: Callable[[WantedCancel, Any], None] | None = None,
    ) -> None:
        """Record them all as wanted in one call, then publish each.

        ``published`` is called with each wanted cancel and its ``AsyncResult``
        as soon as it is published (``celery pictify cancel`` prints it).
        """
        record_wanted(self._store(), wanted, self._wanted_ttl())
        self.publish(wanted, published)

    def publish(
        self,
        wanted: Sequence[WantedCancel],
        published: Callable[[WantedCancel, Any], None] | None = None,
    ) -> None:
        """Publish cancels already recorded as wanted (the sweep's re-sends)."""
        app = self._live_app()
        task = app.tasks[CANCEL_BATCH]
        with app.producer_or_acquire() as producer:
            for item in wanted:
                result = task.apply_async(
                    (item.batch_id,),
                    {"reason": item.reason} if item.reason else None,
                    producer=producer,
                    headers={ASKED_AT_HEADER: item.asked_at},
                    root_id=item.root_id,
                    parent_id=item.parent_id,
                )
                if published is not None:
                    published(item, result)

    def starts(self, start_ids: Sequence[str]) -> None:
        app = self._live_app()
        task = app.tasks[CANCEL_START]
        with app.producer_or_acquire() as producer:
            for start_id in start_ids:
                task.apply_async((start_id,), producer=producer)

    def _live_app(self) -> Any:
        app = self._app()
        if app is None:
            raise RuntimeError("the Celery app is gone")
        return app
