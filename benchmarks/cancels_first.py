"""Cancels first: polls fill a 50/s key, then a workflow of 100 batches is revoked.

200 running batches are polled by ``pictify.wait_for_batch(poll_interval=1)``
(they never finish): 200 polls a second wanted, 50 requests a second allowed.
Once the polls have run for ``--settle`` seconds, a workflow of 100 other
batches is revoked. Measured: from the revoke call to the last of its
batches' first effective cancel (ideal: 100 / 50 = 2 s), the requests
answered 429, and the polls per second before and while the cancels go.

``wait_for_batch`` spaces its polls by the batch's measured progress
(``pictify_tasks.polling``): batches that do not move are polled half as
often each time, so both the limiter's priorities and fewer polls show here.

    python benchmarks/cancels_first.py [--quick] [--polled 200] [--revoked 100] [--rate 50]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from typing import Any

from common import Options, bench_run, main, progress, refused, tracked_workflow, wait_for_cancels

from pictify_tasks.testing import PictifyEmulator


def polls_per_second(emulator: PictifyEmulator, start: float, end: float) -> float:
    """Polls answered 200 per second between two monotonic times.

    Counted per whole second of the wall clock (the emulator's windows, whose
    polls go at their start), as the median of the seconds wholly inside;
    over a shorter span, the count over the span.
    """
    polls = [
        r
        for r in emulator.requests_matching(method="GET", path_contains="/results")
        if r.status == 200 and start <= r.monotonic < end
    ]
    per_second = collections.Counter(int(r.time) for r in polls)
    whole = sorted(per_second)[1:-1]
    if whole:
        return float(statistics.median(per_second[second] for second in whole))
    return round(len(polls) / (end - start), 2) if end > start else 0.0


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    polled = 20 if options.quick else args.polled
    revoked = 10 if options.quick else args.revoked
    settle = 1.0 if options.quick else args.settle
    rate = args.rate
    with bench_run(options, "first", workers=2, rate=rate, listening=True) as bench:
        emulator, app = bench.emulator, bench.app
        wait = app.tasks["pictify.wait_for_batch"]
        progress(f"{polled} batches polled every 1 s on a {rate}/s key")
        with app.producer_or_acquire() as producer:
            for _ in range(polled):
                batch_id = emulator.create_batch()
                wait.apply_async((batch_id,), {"poll_interval": 1}, producer=producer)
        polling_since = time.monotonic()
        time.sleep(settle)  # the measurement: polls in steady state
        workflow_id, batch_ids = tracked_workflow(app, emulator, revoked)
        progress(f"revoking a workflow of {revoked} other batches")
        began = time.monotonic()
        app.control.revoke(workflow_id)
        done = max(wait_for_cancels(emulator, batch_ids, timeout=60).values())
    elapsed = done - began
    ideal = revoked / rate
    before_from = polling_since + min(1.0, settle / 2)  # steady once every poll ran once
    return {
        "benchmark": "cancels_first",
        "polled_batches": polled,
        "poll_interval_s": 1,
        "revoked_batches": revoked,
        "api_rate_per_s": rate,
        "elapsed_s": round(elapsed, 3),
        "ideal_s": round(ideal, 3),
        "ratio_to_ideal": round(elapsed / ideal, 4),
        "requests_429": refused(emulator),
        "polls_per_s_before": polls_per_second(emulator, before_from, began),
        "polls_per_s_during": polls_per_second(emulator, began, done),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--polled", type=int, default=200)
    parser.add_argument("--revoked", type=int, default=100)
    parser.add_argument("--rate", type=int, default=50, help="the API's requests per second")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of polls first")


if __name__ == "__main__":
    raise SystemExit(main(__doc__.split("\n\n")[0], run, add_arguments))
