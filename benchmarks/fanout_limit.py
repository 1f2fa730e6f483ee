"""Fan-out under a limit: one workflow of 1,000 batches revoked, two workers, a 50/s key.

The emulator limits the key to ``--rate`` requests per one-second window.
Two ``celery worker`` processes (concurrency 2 each) hear the revoke
broadcast, each enqueues the cancels, and the ledger makes them one request
per batch. Measured, on the emulator's clock: from the revoke call to the
last batch's first effective cancel. Ideal: batches / rate seconds. Counted:
requests answered 429 (the target is none).

By default the workers know no rate: the limiter learns it from the API's
headers (``--rate-limit 50/s`` sets ``PICTIFY_RATE_LIMIT`` as well).

    python benchmarks/fanout_limit.py [--quick] [--batches 1000] [--rate 50]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import Options, bench_run, main, progress, refused, tracked_workflow, wait_for_cancels


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    batches = 50 if options.quick else args.batches
    rate = args.rate
    ideal = batches / rate
    configured = {"PICTIFY_RATE_LIMIT": args.rate_limit} if args.rate_limit else {}
    with bench_run(options, "fanout", workers=2, rate=rate, listening=True, **configured) as bench:
        emulator = bench.emulator
        workflow_id, batch_ids = tracked_workflow(bench.app, emulator, batches)
        progress(f"revoking one workflow of {batches} batches on a {rate}/s key")
        began = time.monotonic()
        bench.app.control.revoke(workflow_id)
        arrivals = wait_for_cancels(emulator, batch_ids, timeout=3 * ideal + 30, every=0.05)
    elapsed = max(arrivals.values()) - began
    sent = [r for r in emulator.cancel_requests() if r.monotonic >= began]
    return {
        "benchmark": "fanout_limit",
        "batches": batches,
        "workers": 2,
        "concurrency_per_worker": 2,
        "api_rate_per_s": rate,
        "pictify_rate_limit": args.rate_limit or None,
        "elapsed_s": round(elapsed, 3),
        "ideal_s": round(ideal, 3),
        "ratio_to_ideal": round(elapsed / ideal, 4),
        "requests_429": refused(emulator, since=began),
        "cancel_requests": len(sent),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=50, help="the API's requests per second")
    parser.add_argument("--rate-limit", default="", help="PICTIFY_RATE_LIMIT for the workers")


if __name__ == "__main__":
    raise SystemExit(main(__doc__.split("\n\n")[0], run, add_arguments))
