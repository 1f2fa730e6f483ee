"""Batches and their store; progress is a function of time, so nothing runs them."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from pictify_tasks.statuses import BATCH_STATUSES, RUNNING_STATUSES, TERMINAL_STATUSES

_CDN = "https://cdn.emulator.invalid"


def _iso(timestamp: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``, as JavaScript back ends write it."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Batch:
    """One batch. Progress is derived from elapsed time when read, so no thread runs it."""

    def __init__(
        self,
        batch_id: str,
        template_uid: str,
        total_items: int,
        status: str,
        rate: float,
        image_format: str,
        webhook_url: str | None = None,
    ) -> None:
        now_mono, now_wall = time.monotonic(), time.time()
        self.batch_id = batch_id
        #: Where its end is told (``batch.completed``), once: ``announced`` then.
        self.webhook_url = webhook_url
        self.announced = False
        self.template_uid = template_uid
        self.total_items = total_items
        self.rate = rate
        self.image_format = image_format
        self.status = status
        self.created_wall = now_wall
        self.started_wall: float | None = None if status in ("pending", "cancelled") else now_wall
        self.completed_wall: float | None = now_wall if status in TERMINAL_STATUSES else None
        # Progress runs from an anchor: base_rendered items done at anchor time.
        self.anchor_monotonic = now_mono
        self.anchor_wall = now_wall
        self.rendered = 0
        self.failed = 0
        if status == "completed":
            self.rendered = total_items
        elif status == "partial":
            self.rendered = total_items // 2
            self.failed = total_items - self.rendered
        elif status == "failed":
            self.failed = total_items
        self.base_rendered = self.rendered
        self.cancel_requests = 0
        self.effective_cancels = 0
        #: When (``time.monotonic()``) a lagging cancel takes effect, if one was asked.
        self.cancel_due: float | None = None

    def settle(self, now: float) -> None:
        """Bring the stored state up to ``now`` (time.monotonic())."""
        if self.status in TERMINAL_STATUSES:
            return
        due = self.cancel_due
        if due is not None and now >= due:
            self._advance(due)
            if self.status not in TERMINAL_STATUSES:
                self._stop(time.time() - (now - due))
            return
        self._advance(now)

    def _advance(self, now: float) -> None:
        if self.status in TERMINAL_STATUSES or self.rate <= 0:
            return
        done = int((now - self.anchor_monotonic) * self.rate)
        rendered = min(self.total_items, self.base_rendered + max(0, done))
        if rendered > self.base_rendered and self.status == "pending":
            self.status = "processing"
        if rendered > self.base_rendered and self.started_wall is None:
            self.started_wall = self.anchor_wall + 1.0 / self.rate
        self.rendered = rendered
        if rendered >= self.total_items:
            self.status = "completed"
            self.completed_wall = (
                self.anchor_wall + (self.total_items - self.base_rendered) / self.rate
            )

    def force(self, status: str) -> None:
        """Set a status by hand; running statuses resume progress from here."""
        now_mono, now_wall = time.monotonic(), time.time()
        self.settle(now_mono)
        self.status = status
        if status in RUNNING_STATUSES:
            self.failed = 0
            self.completed_wall = None
            self.anchor_monotonic, self.anchor_wall = now_mono, now_wall
            self.base_rendered = self.rendered
            if status == "processing" and self.started_wall is None:
                self.started_wall = now_wall
            self.settle(now_mono)
            return
        self.completed_wall = now_wall
        if status == "completed":
            self.rendered, self.failed = self.total_items, 0
        elif status in ("partial", "failed"):
            self.failed = self.total_items - self.rendered
        else:
            self.failed = 0
        if status != "cancelled" and self.started_wall is None:
            self.started_wall = now_wall

    def ends_at(self) -> float | None:
        """When (monotonic) it ends by itself: it completes, or a lagging cancel stops it."""
        if self.status in TERMINAL_STATUSES:
            return None
        ends = [] if self.cancel_due is None else [self.cancel_due]
        if self.rate > 0:
            ends.append(self.anchor_monotonic + (self.total_items - self.base_rendered) / self.rate)
        return min(ends, default=None)

    def cancel(self, lag: float = 0.0) -> str:
        """Cancel if still running; returns ``cancelled``, ``already`` or ``finished``.

        With a ``lag`` (seconds) a running batch is only asked to stop: it
        stops that much later, and this returns ``lagging``.
        """
        now_mono, now_wall = time.monotonic(), time.time()
        self.settle(now_mono)
        self.cancel_requests += 1
        if self.status == "cancelled":
            return "already"
        if self.status in TERMINAL_STATUSES:
            return "finished"
        if lag > 0:
            if self.cancel_due is None:
                self.cancel_due = now_mono + lag
            return "lagging"
        self._stop(now_wall)
        return "cancelled"

    def _stop(self, at_wall: float) -> None:
        self.cancel_due = None  # taken effect: a status set by hand later is not undone
        self.status = "cancelled"
        self.completed_wall = at_wall
        self.effective_cancels += 1

    def public(self) -> dict[str, Any]:
        """The results-endpoint body (call :meth:`settle` first)."""
        processed = self.rendered + self.failed
        progress = 100 if self.total_items == 0 else processed * 100 // self.total_items
        failed_from = self.total_items - self.failed
        return {
            "batchId": self.batch_id,
            "status": self.status,
            "progress": progress,
            "totalItems": self.total_items,
            "completedItems": self.rendered,
            "failedItems": self.failed,
            "results": [
                {"index": i, "url": f"{_CDN}/{self.batch_id}/{i}.{self.image_format}"}
                for i in range(self.rendered)
            ],
            "errors": [
                {"index": i, "message": "Rendering failed (emulated)", "code": "render_failed"}
                for i in range(failed_from, self.total_items)
            ],
            "createdAt": _iso(self.created_wall),
            "startedAt": _iso(self.started_wall),
            "completedAt": _iso(self.completed_wall),
        }


class BatchStore:
    """All batches, behind one lock; every read settles progress first.

    It also keeps the render rate new batches get unless told otherwise.
    """

    def __init__(self, items_per_second: float) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self.items_per_second = items_per_second
        #: Seconds a cancel takes to stop a running batch (0: at once; see ``cancel``).
        self.cancel_lag = 0.0
        #: Set whenever a batch is made or changed by hand: the webhook sender looks again.
        self.changed = threading.Event()

    @property
    def items_per_second(self) -> float:
        """Default render rate for batches created from now on (0: they never progress)."""
        return self._items_per_second

    @items_per_second.setter
    def items_per_second(self, value: float) -> None:
        self._items_per_second = _rate(value)

    def create(
        self,
        template_uid: str,
        total_items: int,
        status: str = "pending",
        image_format: str = "png",
        items_per_second: float | None = None,
        webhook_url: str | None = None,
    ) -> str:
        """A new batch's id; ``items_per_second`` defaults to the store's rate."""
        _check_status(status)
        if total_items < 1:
            raise ValueError("total_items must be >= 1")
        rate = self._items_per_second if items_per_second is None else _rate(items_per_second)
        batch_id = "batch_" + uuid.uuid4().hex[:24]
        batch = Batch(batch_id, template_uid, total_items, status, rate, image_format, webhook_url)
        with self._lock:
            self._batches[batch_id] = batch
        self.changed.set()
        return batch_id

    def take_ended(self, now: float) -> tuple[list[tuple[str, dict[str, Any]]], float | None]:
        """(webhook URL, ``data`` of a ``batch.completed``) of batches ended unannounced.

        They are announced from now on. Also when the next running batch with a
        webhook URL ends by itself (``time.monotonic()``), or ``None``.
        """
        ended: list[tuple[str, dict[str, Any]]] = []
        next_end: float | None = None
        with self._lock:
            for batch in self._batches.values():
                if batch.webhook_url is None or batch.announced:
                    continue
                batch.settle(now)
                ends_at = batch.ends_at()
                if batch.status not in TERMINAL_STATUSES:
                    if ends_at is not None:
                        next_end = ends_at if next_end is None else min(next_end, ends_at)
                    continue
                batch.announced = True
                data = {
                    "batchId": batch.batch_id,
                    "status": batch.status,
                    "totalCount": batch.total_items,
                    "completedCount": batch.rendered,
                    "failedCount": batch.failed,
                }
                ended.append((batch.webhook_url, data))
        return ended, next_end

    def _get(self, batch_id: str) -> Batch:
        try:
            return self._batches[batch_id]
        except KeyError:
            raise KeyError(f"unknown batch {batch_id!r}") from None

    def public(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            batch.settle(time.monotonic())
            return batch.public()

    def snapshot(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self._get(batch_id)
            batch.settle(time.monotonic())
            data = batch.public()
            data["cancelRequests"] = batch.cancel_requests
            data["effectiveCancels"] = batch.effective_cancels
            return data

    def force(self, batch_id: str, status: str) -> None:
        """Set a batch's status by hand (``KeyError`` for an unknown batch)."""
        _check_status(status)
        with self._lock:
            self._get(batch_id).force(status)
        self.changed.set()

    def cancel(self, batch_id: str) -> tuple[str, str] | None:
        """``(outcome, status after)`` or ``None`` for an unknown batch."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            outcome = batch.cancel(self.cancel_lag)
        self.changed.set()
        return outcome, batch.status

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()


def _check_status(status: str) -> None:
    if status not in BATCH_STATUSES:
        raise ValueError(f"status must be one of {BATCH_STATUSES}, got {status!r}")


def _rate(value: float) -> float:
    if value < 0:
        raise ValueError("items_per_second must be >= 0")
    return float(value)
