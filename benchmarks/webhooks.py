"""Polling vs webhooks: API requests per batch, and the delay from a batch's end to the next task.

Runs ``start_batch -> wait_for_batch -> bench.stamp`` for N batches started
without a webhook URL (the wait polls with ``poll_interval=--poll-interval``,
aimed at the batch's expected end),
then N started with one (the emulator tells their end to a real receiver,
``pictify_tasks.webhooks.wsgi_app`` served on loopback, and the wait polls
only as a safety net, every 300 s), against a real worker, in one run:

* ``requests_per_batch``: every API request naming the batch (its polls and
  any cancel), plus its start (batches render for 8.5 to 13 s);
* ``end_to_next_ms``: from the batch's end (the emulator's ``completedAt``)
  to ``bench.stamp`` starting on the worker (both on this machine's clock);
* ``receiver_answer_ms`` (webhooks): the receiver's answer to each delivery,
  as the emulator's sender timed it (one store round trip and one publish).

Medians over the N batches of each mode. Progress goes to stderr, one JSON
object to stdout (last line); the common options (``--redis-url``,
``--broker``, ``--quick``...) are :mod:`benchmarks.common`'s. It exits
non-zero if a chain misses its deadline; it asserts no timings.

    python benchmarks/webhooks.py [--batches 20] [--poll-interval 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from typing import Any

from celery import Celery, chain
from common import BenchmarkError, Options, bench_run, main, progress, summary_ms

from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.testing.emulator import DEFAULT_WEBHOOK_SECRET
from pictify_tasks.testing.receiver import serve_receiver

#: Batch i renders 17 + i % 10 rows at the emulator's 2 items/s: 8.5 to 13 s, so
#: batches end at every phase of a poll interval, as real ones do.
SIZES = [17 + i % 10 for i in range(10)]
STAGGER = 0.2  # seconds between two starts, so that batches end apart
CHAIN_DEADLINE = 60.0  # seconds a chain may take after the last start
SAFETY_POLL = 300  # the worker's pictify_webhook_poll_interval (the default)


def run_mode(
    app: Celery, emulator: PictifyEmulator, batches: int, poll: float, hook: str | None
) -> dict[str, Any]:
    """N chains of one mode; their requests per batch and end-to-next delays."""
    tasks = app.tasks
    flows = []
    for i in range(batches):
        rows = [{"n": n} for n in range(SIZES[i % len(SIZES)])]
        flows.append(
            chain(
                tasks["pictify.start_batch"].s("tpl_bench", rows, webhook_url=hook),
                tasks["pictify.wait_for_batch"].s(poll_interval=poll),
                app.signature("bench.stamp"),
            ).apply_async()
        )
        time.sleep(STAGGER)  # paces the starts; nothing waits on it
    deadline = time.monotonic() + CHAIN_DEADLINE
    requests: list[int] = []
    polls: list[int] = []
    delays: list[float] = []
    answers: list[float] = []
    for flow in flows:
        try:
            stamped = flow.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:
            raise BenchmarkError(f"a chain did not end in time: {exc!r}") from exc
        batch_id = stamped["batch_id"]
        named = emulator.requests_matching(path_contains=f"/{batch_id}/")
        polls.append(sum(1 for r in named if r.method == "GET"))
        requests.append(1 + len(named))  # its start names the template, not the batch
        ended = emulator.batch(batch_id)["completedAt"]
        delays.append(stamped["at"] - _wall(ended))
        answers.extend(d.elapsed for d in emulator.webhook_deliveries(batch_id))
    return {
        "batches": batches,
        "requests_per_batch_median": statistics.median(requests),
        "polls_per_batch_median": statistics.median(polls),
        "requests_total": sum(requests),
        "end_to_next_ms": summary_ms(delays),
        # The receiver's answer to each delivery, as the emulator timed it (webhooks only).
        **({"receiver_answer_ms": summary_ms(answers)} if answers else {}),
    }


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    batches = 5 if options.quick else args.batches
    poll = args.poll_interval
    if batches < 1 or not poll > 0:
        raise BenchmarkError("--batches must be at least 1 and --poll-interval above 0")
    with bench_run(
        options,
        "webhooks",
        PICTIFY_WEBHOOK_SECRET=DEFAULT_WEBHOOK_SECRET,
        PICTIFY_WEBHOOK_POLL_INTERVAL=str(SAFETY_POLL),
    ) as bench:
        bench.emulator.items_per_second = 2.0
        bench.app.conf.pictify_webhook_secret = DEFAULT_WEBHOOK_SECRET
        with serve_receiver(bench.app) as hook:
            progress(f"{options.broker}: {batches} batches polled from every {poll:g} s")
            polling = run_mode(bench.app, bench.emulator, batches, poll, None)
            progress(f"{options.broker}: {batches} batches told by webhook")
            webhooks = run_mode(bench.app, bench.emulator, batches, poll, hook)
    return {
        "benchmark": "webhooks",
        "broker": options.broker,
        "batch_seconds": [min(SIZES) / 2, max(SIZES) / 2],
        "poll_interval_s": poll,
        "safety_poll_s": SAFETY_POLL,
        "polling": polling,
        "webhooks": webhooks,
    }


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=int, default=20, help="batches per mode")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="the waits' poll_interval")


if __name__ == "__main__":
    sys.exit(main((__doc__ or "").split("\n\n")[0], run, add_arguments))
