"""HTTP call cost: the CPU one cancel request costs the calling thread, by route.

Against the emulator in this process (no API limit), in interleaved rounds of
``--calls`` calls on fresh batches, the calling thread's CPU time
(``time.thread_time``: the emulator's threads are not counted) per call:

* ``naive``: ``requests.post`` once (a new session and connection per call);
* ``requests_route``: ``PictifyClient.cancel_batch`` on a session passed in,
  sent through ``requests`` (keep-alive);
* ``direct_route``: ``PictifyClient.cancel_batch`` on the client's own session,
  sent straight through its urllib3 pool (``transport.DirectRoute``).

No worker, no state store: what the client costs per call, which a worker
pays on every cancel. The figures are the medians of the rounds.

    python benchmarks/http_call_cost.py [--quick] [--calls 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any, Callable

import requests
from common import Options, main, progress

from pictify_tasks import PictifyClient
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.transport import new_session


def cpu_us_per_call(call: Callable[[str], object], batch_ids: list[str]) -> float:
    """The calling thread's CPU microseconds per call, over ``batch_ids``."""
    began = time.thread_time()
    for batch_id in batch_ids:
        call(batch_id)
    return (time.thread_time() - began) / len(batch_ids) * 1e6


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    calls = 100 if options.quick else args.calls
    rounds = 1 if options.quick else args.rounds
    api_key = f"pk_test_{uuid.uuid4().hex}"
    with PictifyEmulator(api_key=api_key, items_per_second=0, rate_limit=None) as emulator:
        base_url = emulator.base_url
        auth = {"Authorization": f"Bearer {api_key}"}

        def naive(batch_id: str) -> object:
            url = f"{base_url}/templates/batch/{batch_id}/cancel"
            return requests.post(url, headers=auth, timeout=10).status_code

        through_requests = PictifyClient(api_key, base_url=base_url, session=new_session(base_url))
        direct = PictifyClient(api_key, base_url=base_url)
        kinds: dict[str, Callable[[str], object]] = {
            "naive": naive,
            "requests_route": through_requests.cancel_batch,
            "direct_route": direct.cancel_batch,
        }
        for call in kinds.values():  # connections and first-use imports, untimed
            cpu_us_per_call(call, [emulator.create_batch() for _ in range(20)])
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for number in range(rounds):
            for kind, call in kinds.items():
                batch_ids = [emulator.create_batch() for _ in range(calls)]
                samples[kind].append(cpu_us_per_call(call, batch_ids))
                progress(f"round {number + 1}: {kind} {samples[kind][-1]:.0f} us per call")
        through_requests.close()
        direct.close()
    median = {kind: statistics.median(values) for kind, values in samples.items()}
    return {
        "benchmark": "http_call_cost",
        "calls_per_round": calls,
        "rounds": rounds,
        "cpu_us_per_call": {kind: round(value, 1) for kind, value in median.items()},
        "all_rounds": {kind: [round(v, 1) for v in values] for kind, values in samples.items()},
        "requests_work_us_per_call": round(median["requests_route"] - median["direct_route"], 1),
        "ratio_direct_to_requests_route": round(
            median["direct_route"] / median["requests_route"], 3
        ),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)


if __name__ == "__main__":
    raise SystemExit(main(__doc__.split("\n\n")[0], run, add_arguments))
