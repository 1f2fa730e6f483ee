"""How long ``wait_for_batch`` waits before its next poll, from the batch's measured progress.

Every poll spends a request of the key's budget, the budget cancels need
when a workflow is revoked. Polling every ``poll_interval`` seconds costs
``duration / poll_interval`` requests per batch; a 10-minute batch polled
every 5 s costs 120. Instead the wait aims at the batch's expected end: the
rate between the last two samples gives the time the remaining items need,
and the next poll goes then. An early estimate is corrected by the next
sample, which measures over a longer stretch and lands closer; near the end
the wait is ``poll_interval``, so a finished batch is noticed within about
one ``poll_interval`` of a steady estimate. A batch that does not move (it
waits behind the plan's limit of concurrent batches) is polled half as often
each time. The wait is never below ``poll_interval`` nor above ``cap``.

Pure: no clock, no I/O; the caller passes the samples (any one clock, in
seconds; a wall clock when retries may run on other machines).
"""

from __future__ import annotations

from dataclasses import dataclass

from pictify_tasks.models import BatchInfo

__all__ = ["ProgressSample", "next_poll_interval", "simulate_polls"]


@dataclass(frozen=True)
class ProgressSample:
    """One poll's view of a batch: items no longer rendering, of ``total``, at ``at`` seconds."""

    completed: int | None
    total: int | None
    at: float

    @classmethod
    def from_info(cls, info: BatchInfo, at: float) -> ProgressSample:
        """A sample of a polled batch; failed items are done too (they render no more)."""
        done = info.completed_items
        if done is not None:
            done += info.failed_items or 0
        return cls(done, info.total_items, at)


def next_poll_interval(
    previous: ProgressSample | None,
    current: ProgressSample,
    *,
    poll_interval: float,
    cap: float,
) -> float:
    """Seconds until the next poll: aimed at the expected end, within ``[poll_interval, cap]``.

    ``previous`` is the sample before ``current`` (``None`` at the first
    poll). Without two samples with counts, the answer is ``poll_interval``.
    """
    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
    ceiling = max(cap, poll_interval)

    def within(seconds: float) -> float:
        return min(ceiling, max(poll_interval, seconds))

    if (
        previous is None
        or previous.completed is None
        or current.completed is None
        or current.total is None
        or current.at <= previous.at
    ):
        return poll_interval
    remaining = current.total - current.completed
    if remaining <= 0:
        return poll_interval  # all rendered: the status turns terminal any moment
    elapsed = current.at - previous.at
    progress = current.completed - previous.completed
    if progress <= 0:
        return within(2 * elapsed)  # not moving: look half as often
    return within(remaining * elapsed / progress)


def simulate_polls(
    duration: float, *, total: int = 100, poll_interval: float, cap: float, wait_before: float = 0
) -> tuple[int, float]:
    """Polls of a batch that waits ``wait_before`` s, then renders steadily for ``duration`` s.

    Returns the number of polls (the last one sees the end) and the seconds
    between the batch's end and that poll: the sizing model's numbers.
    """
    end = wait_before + duration

    def sample(at: float) -> ProgressSample:
        share = min(1.0, max(0.0, (at - wait_before) / duration))
        return ProgressSample(int(total * share), total, at)

    at, polls, previous = 0.0, 0, None
    while True:
        polls += 1
        current = sample(at)
        if at >= end:
            return polls, at - end
        at += next_poll_interval(previous, current, poll_interval=poll_interval, cap=cap)
        previous = current
