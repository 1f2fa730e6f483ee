"""Revoke-to-cancel latency and worker start-up time, measured against a real worker.

For each revoke it times, on one monotonic clock, the call in this process
until the emulator (also in this process) receives the batch's cancel:

* ``broadcast``: ``app.control.revoke(wf)``; the worker's revoke listener hears it.
* ``helper``: ``pictify_tasks.revoke_workflow(...)``; this process enqueues the cancel.

Between revokes it times a control ``ping`` of the worker (a broadcast and
its reply: the broker's own round trip), the yardstick the revoke paths are
read against. It also starts the worker repeatedly with the listener on and
off (Mingle left on) to show the listener does not stall start-up. It only
measures: it exits non-zero if a cancel misses its deadline.

    python benchmarks/revoke_latency.py [--quick] [--broker redis|rabbitmq] [--revokes 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from common import BenchmarkError, Options, bench_run, main, progress, summary_ms

import pictify_tasks
from pictify_tasks.testing import PictifyEmulator

CANCEL_DEADLINE = 20.0  # seconds from a revoke to its cancel before the run fails
PATHS = ("broadcast", "helper")


class Bench:
    """The caller's side: the emulator, the caller's app, one timed revoke or ping."""

    def __init__(self, app: Celery, emulator: PictifyEmulator, worker: str) -> None:
        self.app = app
        self.emulator = emulator
        self.worker = worker

    def tracked_batch(self) -> tuple[str, str]:
        """A running batch linked to a fresh workflow id, as a caller would link it."""
        batch_id = self.emulator.create_batch()
        workflow_id = f"bench-{uuid.uuid4().hex}"
        pictify_tasks.track_batch(batch_id, workflow_id=workflow_id, app=self.app)
        return batch_id, workflow_id

    def revoke(self, path: str, workflow_id: str) -> None:
        if path == "broadcast":
            self.app.control.revoke(workflow_id)
        else:
            pictify_tasks.revoke_workflow(AsyncResult(workflow_id, app=self.app), app=self.app)

    def cancel_arrival(self, batch_id: str, timeout: float) -> float:
        """When (emulator's ``time.monotonic()``) the batch's first cancel arrived."""
        requests = self.emulator.wait_for_requests(
            1, method="POST", path_contains=f"/{batch_id}/cancel", timeout=timeout
        )
        return requests[0].monotonic

    def timed_revoke(self, path: str) -> float:
        """Seconds from the revoke call to the emulator receiving the cancel."""
        batch_id, workflow_id = self.tracked_batch()
        began = time.monotonic()
        self.revoke(path, workflow_id)
        try:
            return self.cancel_arrival(batch_id, CANCEL_DEADLINE) - began
        except TimeoutError:
            raise BenchmarkError(
                f"{path}: the cancel of batch {batch_id} did not arrive "
                f"within {CANCEL_DEADLINE:g} s of revoking {workflow_id}"
            ) from None

    def timed_ping(self) -> float:
        """Seconds from a control ``ping`` of the worker to its reply."""
        began = time.monotonic()
        replies = self.app.control.ping(destination=[self.worker], timeout=1.0)
        elapsed = time.monotonic() - began
        if not replies:
            raise BenchmarkError(f"the worker {self.worker} did not answer a ping within 1 s")
        return elapsed

    def settle(self) -> None:
        """Return once the worker neither runs nor holds a task (ETA retries aside).

        The timing ends when the cancel request arrives, but its task is still
        busy until the response is read, so a revoke sent at once would time
        queueing behind it (two pool processes) rather than its own path.
        """
        inspect = self.app.control.inspect(destination=[self.worker], timeout=1.0)
        deadline = time.monotonic() + CANCEL_DEADLINE
        while time.monotonic() < deadline:  # each check is a round trip to the worker
            if all(
                (query() or {}).get(self.worker) == []
                for query in (inspect.active, inspect.reserved)
            ):
                return
        raise BenchmarkError(f"the worker was still busy {CANCEL_DEADLINE:g} s after a cancel")

    def wait_for_listener(self) -> None:
        """Re-broadcast until the worker's listener acts on one.

        A ping reply shows the worker is up, not that the listener thread has
        subscribed yet, and a broadcast sent before that is not queued for it.
        """
        batch_id, workflow_id = self.tracked_batch()
        deadline = time.monotonic() + CANCEL_DEADLINE
        while True:
            self.app.control.revoke(workflow_id)
            try:
                self.cancel_arrival(batch_id, min(1.0, max(0.0, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise BenchmarkError(
                        f"the worker's revoke listener did not act on a broadcast "
                        f"within {CANCEL_DEADLINE:g} s"
                    ) from None


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything; every worker started here is stopped before this returns."""
    revokes = 5 if options.quick else args.revokes
    startups = 1 if options.quick else args.startups
    warmup = 1 if options.quick else args.warmup
    settle = not args.back_to_back
    timings: dict[str, list[float]] = {path: [] for path in (*PATHS, "ping")}
    startup: dict[str, list[float]] = {"listener_on": [], "listener_off": []}
    with bench_run(options, "latency") as run_:
        bench = Bench(run_.app, run_.emulator, run_.workers[0].name)
        bench.wait_for_listener()
        for _ in range(warmup):  # first-use connections and sessions, both sides
            for path in PATHS:
                bench.timed_revoke(path)
            bench.timed_ping()
        progress(f"{options.broker}: timing {revokes} revokes per path and pings")
        for _ in range(revokes):
            for path in PATHS:
                if settle:
                    bench.settle()
                timings[path].append(bench.timed_revoke(path))
            if settle:
                bench.settle()
            timings["ping"].append(bench.timed_ping())
        progress(f"{options.broker}: starting a worker {startups}x, listener on and off")
        # On a queue of their own: the messages a stopped worker hands back (cancel
        # retries it was holding) must not run while they start.
        for _ in range(startups):
            for key, switch in (("listener_on", "1"), ("listener_off", "0")):
                env = {**run_.env, "PICTIFY_REVOKE_LISTENER": switch}
                with run_.more_workers("startup", env) as [started]:
                    assert started.ready_after is not None
                    startup[key].append(started.ready_after)
    ping = statistics.median(timings["ping"])
    on, off = (statistics.median(startup[key]) for key in ("listener_on", "listener_off"))
    result: dict[str, Any] = {
        "benchmark": "revoke_latency",
        "broker": options.broker,
        "revokes": revokes,
        "warmup_per_path": warmup,
        "settled": settle,
        "ping_ms": summary_ms(timings["ping"]),
    }
    for path in PATHS:
        result[f"{path}_ms"] = summary = summary_ms(timings[path])
        result[f"{path}_p95_to_ping_median"] = round(summary["p95"] / (ping * 1000), 2)
    result["startup_s"] = {
        key: {"median": round(statistics.median(values), 3), "all": [round(v, 3) for v in values]}
        for key, values in startup.items()
    }
    result["ratio_startup_on_off"] = round(on / off, 3)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revokes", type=int, default=50, help="timed revokes per path")
    parser.add_argument("--startups", type=int, default=5, help="worker starts per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed revokes per path first")
    parser.add_argument(
        "--back-to-back",
        action="store_true",
        help="send each revoke as soon as the previous cancel arrived, without settling",
    )


if __name__ == "__main__":
    raise SystemExit(main(__doc__.split("\n\n")[0], run, add_arguments))
