"""The adaptive poll interval: a pure function of two progress samples."""

from __future__ import annotations

import itertools

import pytest

from pictify_tasks.models import BatchInfo
from pictify_tasks.polling import ProgressSample, next_poll_interval, simulate_polls


def nxt(previous: ProgressSample | None, current: ProgressSample, cap: float = 60) -> float:
    return next_poll_interval(previous, current, poll_interval=5, cap=cap)


def test_the_first_poll_and_unknown_counts_wait_the_poll_interval() -> None:
    assert nxt(None, ProgressSample(10, 100, 5.0)) == 5
    assert nxt(ProgressSample(None, None, 0.0), ProgressSample(None, None, 5.0)) == 5
    assert nxt(ProgressSample(0, None, 0.0), ProgressSample(10, None, 5.0)) == 5
    assert nxt(ProgressSample(0, 100, 5.0), ProgressSample(10, 100, 5.0)) == 5  # no time passed


def test_steady_progress_aims_at_the_expected_end() -> None:
    # 20 items in 10 s, 30 left: the end is expected in 15 s
    assert nxt(ProgressSample(50, 100, 0.0), ProgressSample(70, 100, 10.0)) == 15
    # far from the end: the cap; close to it: the poll interval
    assert nxt(ProgressSample(0, 1000, 0.0), ProgressSample(10, 1000, 10.0)) == 60
    assert nxt(ProgressSample(90, 100, 0.0), ProgressSample(99, 100, 10.0)) == 5
    assert nxt(ProgressSample(90, 100, 0.0), ProgressSample(100, 100, 10.0)) == 5


def test_a_batch_that_does_not_move_is_polled_half_as_often_each_time() -> None:
    waits = []
    at, previous = 0.0, None
    for _ in range(6):
        current = ProgressSample(0, 100, at)
        wait = nxt(previous, current)
        waits.append(wait)
        previous, at = current, at + wait
    assert waits == [5, 10, 20, 40, 60, 60]


@pytest.mark.parametrize(
    ("before", "after", "elapsed"),
    list(itertools.product([0, 1, 50, 99], [0, 1, 50, 99, 100], [0.01, 1, 30, 1000])),
)
def test_never_below_the_poll_interval_nor_above_the_cap(
    before: int, after: int, elapsed: float
) -> None:
    wait = nxt(ProgressSample(before, 100, 100.0), ProgressSample(after, 100, 100.0 + elapsed))
    assert 5 <= wait <= 60


def test_a_cap_below_the_poll_interval_leaves_the_poll_interval() -> None:
    assert nxt(ProgressSample(0, 100, 0.0), ProgressSample(1, 100, 10.0), cap=1) == 5


def test_a_bad_poll_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        next_poll_interval(None, ProgressSample(0, 1, 0.0), poll_interval=0, cap=60)


def test_failed_items_count_as_done() -> None:
    info = BatchInfo("b1", "processing", 0.5, 10, 3, 2)
    assert ProgressSample.from_info(info, 7.0) == ProgressSample(5, 10, 7.0)
    assert ProgressSample.from_info(BatchInfo("b1", "pending", None, None, None, None), 1.0) == (
        ProgressSample(None, None, 1.0)
    )


@pytest.mark.parametrize(("duration", "most"), [(30, 3), (300, 7), (600, 13)])
def test_a_steady_batch_costs_few_polls_and_is_noticed_soon(duration: float, most: int) -> None:
    polls, late = simulate_polls(duration, total=100, poll_interval=5, cap=60)
    assert polls <= most < duration / 5  # polling every 5 s would cost duration / 5
    assert late <= 5


def test_a_batch_that_waits_before_it_renders_backs_off_then_follows_it() -> None:
    polls, late = simulate_polls(60, total=100, poll_interval=5, cap=60, wait_before=120)
    fixed = (120 + 60) / 5
    assert polls < fixed / 3
    assert late <= 60  # at worst one capped wait
