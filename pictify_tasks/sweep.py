"""The sweep: re-sends wanted cancels whose message was lost. A second line, not a gate.

A cancel is recorded as wanted before its task is published. A message can
still disappear (a Redis broker restarted without persistence, a purged
queue); then nothing would ever send that cancel. Every worker runs this
bootstep; every ``pictify_sweep_interval`` seconds one of them (a lock in the
store) re-publishes the wanted cancels older than one interval that have no
outcome and no live lease. ``pictify_sweep_interval = 0`` switches it off.

The same thread cancels the batches past their ``max_runtime``, more often:
every :data:`DEADLINE_TICK` seconds at most (under a lock of its own: two round
trips when none is due), so a deadline is kept within seconds, not within a
sweep interval.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any

from pictify_tasks._guard import logged_not_raised
from pictify_tasks._runtime import Runtime, runtime_for
from pictify_tasks._steps import ThreadStep

__all__ = ["DEADLINE_TICK", "CancelSweep", "cancel_due_deadlines", "sweep_once", "sweep_ticks"]

logger = logging.getLogger("pictify_tasks.sweep")

#: At most this many cancels are re-sent by one sweep (the next sweep goes on).
SWEEP_LIMIT = 1000
#: The longest time between two looks for batches past their ``max_runtime``.
DEADLINE_TICK = 5.0


def sweep_ticks(interval: float) -> tuple[float, int]:
    """The thread's tick (at most :data:`DEADLINE_TICK` s) and how many make one ``interval``.

    The ticks divide the interval evenly, so the full sweep keeps its interval.
    """
    count = max(1, math.ceil(interval / DEADLINE_TICK))
    return interval / count, count


def cancel_due_deadlines(runtime: Runtime, owner: str, *, now: float | None = None) -> list[str]:
    """Cancel the batches past their ``max_runtime``, if this owner gets the lock; their ids."""
    now = time.time() if now is None else now
    store = runtime.store
    tick, _ = sweep_ticks(runtime.settings.sweep_interval)
    # The lock lives a little less than a tick, so the next look (by anyone) is free.
    if not store.claim_sweep(owner, tick * 0.9, part="deadlines"):
        return []
    # Recorded as wanted before they are taken: publishing is all that is left (the
    # sweep re-sends any this one does not get out).
    due = store.take_due_deadlines(now, SWEEP_LIMIT, runtime.settings.wanted_ttl)
    if due:
        logger.info(
            "pictify-tasks sweep: cancelling %d batch(es) past max_runtime: %s",
            len(due),
            [w.batch_id for w in due],
        )
        runtime.fanout.publisher.publish(due)
    return [w.batch_id for w in due]


def sweep_once(runtime: Runtime, owner: str, *, now: float | None = None) -> list[str]:
    """One sweep, if this owner gets the lock: re-send stale wanted cancels; return their ids.

    Passed deadlines are :func:`cancel_due_deadlines`'s, which the thread runs on its own.
    """
    interval = runtime.settings.sweep_interval
    now = time.time() if now is None else now
    store = runtime.store
    # The lock lives a little less than an interval, so the next sweep (by anyone) is free.
    if not store.claim_sweep(owner, interval * 0.9):
        return []
    stale = store.take_stale_wanted(now - interval, now, SWEEP_LIMIT)
    if stale:
        logger.warning(
            "pictify-tasks sweep: re-sending %d cancel(s) with no outcome and no task on them: %s",
            len(stale),
            [w.batch_id for w in stale],
        )
        runtime.fanout.publisher.publish(stale)  # their wanted records are there already
    return [w.batch_id for w in stale]


class _SweepThread(threading.Thread):
    def __init__(self, runtime: Runtime, owner: str, interval: float) -> None:
        super().__init__(name="pictify-sweep", daemon=True)
        self._runtime = runtime
        self._owner = owner
        self._interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        tick, per_sweep = sweep_ticks(self._interval)
        ticks = 0
        while not self.stopping.wait(tick):
            ticks += 1
            # Each under its own guard: one failing (a bad record, a refused write)
            # must not stop the other.
            with logged_not_raised(logger, "the deadlines' look"):
                cancel_due_deadlines(self._runtime, self._owner)
            if ticks % per_sweep == 0:
                with logged_not_raised(logger, "the sweep"):
                    sweep_once(self._runtime, self._owner)


class CancelSweep(ThreadStep):
    """Consumer bootstep running the sweep on a thread of its own (after Tasks)."""

    label = "pictify cancel sweep"

    def include_if(self, parent: Any) -> bool:
        return runtime_for(parent.app).settings.sweep_interval > 0

    def make_thread(self, parent: Any) -> threading.Thread:
        runtime = runtime_for(parent.app)
        owner = f"{parent.hostname}:{os.getpid()}"
        return _SweepThread(runtime, owner, runtime.settings.sweep_interval)
