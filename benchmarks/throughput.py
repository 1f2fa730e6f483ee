"""Throughput: 2,000 cancels through one worker, against a naive cancel and a no-op task.

One ``celery worker`` (concurrency 2), the API unlimited. In the same run,
rounds of ``--tasks`` tasks of each kind, interleaved:

* ``pictify``: ``pictify.cancel_batch`` (ledger, lease, limiter, keep-alive client);
* ``naive``: a task calling ``requests.post`` once (no ledger, no retry, no limit);
* ``noop``: a task that does nothing (Celery's own cost).

A round publishes its tasks over one producer while the worker does not
consume (``cancel_consumer``), then lets it consume and ends when it has run
them all (its ``stats`` count, polled every 50 ms): the worker's throughput,
not this process's publishing. The worker prefetches as Celery does by
default (4 messages per process). The figures are the medians of the rounds.

``--state-url`` puts the package's state on another Redis than the broker's
(by default they share one, as in the simplest deployment).

    python benchmarks/throughput.py [--quick] [--tasks 2000] [--rounds 5] [--state-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from celery import Celery
from common import Options, bench_run, main, progress, wait_until

from pictify_tasks.testing import PictifyEmulator

KINDS = {"pictify": "pictify.cancel_batch", "naive": "bench.naive_cancel", "noop": "bench.noop"}


def tasks_run(app: Celery, worker: str) -> int:
    """How many tasks the worker has run so far (every kind)."""
    stats = app.control.inspect(destination=[worker], timeout=1.0).stats() or {}
    return sum((stats.get(worker) or {}).get("total", {}).values())


def one_round(
    app: Celery, emulator: PictifyEmulator, worker: str, queue: str, name: str, count: int
) -> float:
    """Tasks per second the worker runs ``count`` tasks of ``name`` at, on fresh batches.

    The tasks are published while the worker does not consume, then it
    starts: the time is the worker's alone, not this process's publishing.
    """
    batch_ids = [emulator.create_batch() for _ in range(count)]
    app.control.cancel_consumer(queue, destination=[worker], reply=True)
    with app.producer_or_acquire() as producer:
        for batch_id in batch_ids:
            if name in app.tasks:  # the package's task, published as a user publishes it
                app.tasks[name].apply_async((batch_id,), producer=producer)
            else:
                app.send_task(name, (batch_id,), producer=producer)
    before = tasks_run(app, worker)
    began = time.monotonic()
    app.control.add_consumer(queue, destination=[worker], reply=True)
    wait_until(
        lambda: tasks_run(app, worker) >= before + count,
        timeout=60 + count / 10,
        what=f"{count} {name} tasks",
        every=0.05,
    )
    return count / (time.monotonic() - began)


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    count = 100 if options.quick else args.tasks
    rounds = 1 if options.quick else args.rounds
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with bench_run(options, "throughput", state_url=args.state_url) as bench:
        app, emulator, worker = bench.app, bench.emulator, bench.workers[0].name
        for name in KINDS.values():  # first-use connections and imports, untimed
            one_round(app, emulator, worker, bench.queue, name, 20)
        for number in range(rounds):
            for kind, name in KINDS.items():
                rates[kind].append(one_round(app, emulator, worker, bench.queue, name, count))
                progress(f"round {number + 1}: {kind} {rates[kind][-1]:.0f} tasks/s")
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    return {
        "benchmark": "throughput",
        "tasks_per_round": count,
        "state": "the broker's Redis" if args.state_url is None else "its own Redis",
        "rounds": rounds,
        "concurrency": 2,
        "tasks_per_s": {kind: round(value, 1) for kind, value in median.items()},
        "all_rounds": {kind: [round(v, 1) for v in values] for kind, values in rates.items()},
        "ratio_pictify_to_naive": round(median["pictify"] / median["naive"], 3),
        "ratio_pictify_to_noop": round(median["pictify"] / median["noop"], 3),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=2000, help="tasks of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--state-url", default=None, help="a Redis for the package's state (default: the broker's)"
    )


if __name__ == "__main__":
    raise SystemExit(main(__doc__.split("\n\n")[0], run, add_arguments))
