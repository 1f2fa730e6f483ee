"""Revoke-to-cancel latency and worker start-up time, measured against a real worker.

For each revoke it times, on one monotonic clock, the call in this process
until the emulator (also in this process) receives the batch's cancel:

* ``broadcast``: ``app.control.revoke(wf)``; the worker's revoke listener hears it.
* ``helper``: ``pictify_tasks.revoke_workflow(...)``; this process enqueues the cancel.

It also starts the worker repeatedly with the listener on and off (Mingle
left on) to show the listener does not stall start-up. It only measures:
one JSON object goes to stdout, progress to stderr; it exits non-zero if a
cancel misses its deadline. Everything stored goes to Redis db 12 (the tests
use db 13), under a queue name of its own.

    python benchmarks/revoke_latency.py [--broker redis|rabbitmq] [--revokes 50] [--startups 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import celery
from celery import Celery
from celery.result import AsyncResult

import pictify_tasks
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.testing.worker import WorkerProcess, caller_app, run_worker

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/12"  # broker, results and state; the tests use db 13
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
CANCEL_DEADLINE = 20.0  # seconds from a revoke to its cancel before the run fails
TTL = 600  # seconds the benchmark's links, outcomes and results stay in Redis
PATHS = ("broadcast", "helper")


class BenchmarkError(Exception):
    """A cancel missed its deadline: the run measured nothing trustworthy."""


class Bench:
    """The caller's side: the emulator, the caller's app, and one timed revoke."""

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


def bench_caller_app(broker_url: str, queue: str) -> Celery:
    """The caller's app: the worker's broker, results, queue and state."""
    return caller_app(
        "pictify_bench_caller",
        broker_url=broker_url,
        result_url=REDIS_URL,
        queue=queue,
        pictify_state_url=REDIS_URL,
        pictify_link_ttl=TTL,
        pictify_outcome_ttl=TTL,
    )


def bench_worker(
    broker_url: str,
    queue: str,
    env: Mapping[str, str],
    log_dir: Path,
    result_url: str = REDIS_URL,
) -> AbstractContextManager[WorkerProcess]:
    """A worker of ``benchmarks.bench_app``, ready when entered, stopped on exit."""
    return run_worker(
        "benchmarks.bench_app",
        broker_url=broker_url,
        result_url=result_url,
        queue=queue,
        log_dir=log_dir,
        env=env,
        concurrency=2,
        pythonpath=[str(ROOT)],
    )


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Median, nearest-rank p95, min and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    return {
        name: round(value * 1000, 2)
        for name, value in (
            ("median", statistics.median(ordered)),
            ("p95", p95),
            ("min", ordered[0]),
            ("max", ordered[-1]),
        )
    }


def run(
    broker: str, revokes: int, startups: int, warmup: int, settle: bool, log_dir: Path
) -> dict[str, Any]:
    """Measure everything; every worker started here is stopped before this returns."""
    broker_url = REDIS_URL if broker == "redis" else AMQP_URL
    queue = f"pictify-bench-{uuid.uuid4().hex[:8]}"
    # Start-up runs get a queue of their own: the messages a stopped worker
    # hands back (cancel retries it was holding) must not run while they start.
    startup_queue = f"{queue}-startup"
    api_key = f"pk_test_{uuid.uuid4().hex}"
    timings: dict[str, list[float]] = {path: [] for path in PATHS}
    startup: dict[str, list[float]] = {"listener_on": [], "listener_off": []}
    with PictifyEmulator(api_key=api_key, items_per_second=0) as emulator:
        env = {
            "PICTIFY_API_KEY": api_key,
            "PICTIFY_BASE_URL": emulator.base_url,
            "PICTIFY_STATE_URL": REDIS_URL,
            "PICTIFY_LINK_TTL": str(TTL),
            "PICTIFY_OUTCOME_TTL": str(TTL),
        }
        app = bench_caller_app(broker_url, queue)
        try:
            with bench_worker(broker_url, queue, env, log_dir) as worker:
                bench = Bench(app, emulator, worker.name)
                bench.wait_for_listener()
                for _ in range(warmup):  # first-use connections and sessions, both sides
                    for path in PATHS:
                        bench.timed_revoke(path)
                progress(f"{broker}: timing {revokes} revokes per path, interleaved")
                for _ in range(revokes):
                    for path in PATHS:
                        if settle:
                            bench.settle()
                        timings[path].append(bench.timed_revoke(path))
            progress(f"{broker}: starting the worker {startups}x with the listener on and off")
            for _ in range(startups):
                for key, switch in (("listener_on", "1"), ("listener_off", "0")):
                    with bench_worker(
                        broker_url,
                        startup_queue,
                        {**env, "PICTIFY_REVOKE_LISTENER": switch},
                        log_dir,
                    ) as worker:
                        assert worker.ready_after is not None
                        startup[key].append(worker.ready_after)
        finally:
            # The per-run queues are durable; removing them must not hide an earlier error.
            # Declared first, because a Redis channel only deletes the queues it knows.
            with contextlib.suppress(Exception), app.connection_for_write() as connection:
                for name in (queue, startup_queue):
                    declared = app.amqp.queues[name].bind(connection.default_channel)
                    declared.declare()
                    declared.delete()
            app.close()
    on, off = (statistics.median(startup[key]) for key in ("listener_on", "listener_off"))
    return {
        "broker": broker,
        "celery": celery.__version__,
        "python": platform.python_version(),
        "revokes": revokes,
        "warmup_per_path": warmup,
        "settled": settle,
        "broadcast_ms": summary_ms(timings["broadcast"]),
        "helper_ms": summary_ms(timings["helper"]),
        "startup_s": {
            key: {
                "median": round(statistics.median(values), 3),
                "all": [round(v, 3) for v in values],
            }
            for key, values in startup.items()
        },
        "ratio_startup_on_off": round(on / off, 3),
    }


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--revokes", type=int, default=50, help="timed revokes per path")
    parser.add_argument("--startups", type=int, default=5, help="worker starts per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed revokes per path first")
    parser.add_argument(
        "--back-to-back",
        action="store_true",
        help="send each revoke as soon as the previous cancel arrived, without settling",
    )
    parser.add_argument("--log-dir", type=Path, help="keep the worker logs here")
    args = parser.parse_args(argv)
    if args.revokes < 1 or args.startups < 1 or args.warmup < 0:
        parser.error("--revokes and --startups must be at least 1, --warmup at least 0")
    return report(
        lambda log_dir: run(
            args.broker,
            args.revokes,
            args.startups,
            args.warmup,
            not args.back_to_back,
            log_dir,
        ),
        args.broker,
        args.log_dir,
    )


def report(run: Callable[[Path], dict[str, Any]], name: str, log_dir: Path | None) -> int:
    """Run a benchmark with its worker logs in ``log_dir`` (kept only on failure if not given).

    One JSON object on stdout when it succeeds; 1 when it measured nothing
    trustworthy (:class:`BenchmarkError`), 130 when interrupted.
    """
    # SIGTERM unwinds like Ctrl-C, so the context managers stop every worker.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    folder = log_dir or Path(tempfile.mkdtemp(prefix="pictify-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        result = run(folder)
    except BenchmarkError as exc:
        progress(f"benchmark failed: {exc}\nworker logs: {folder}")
        return 1
    except KeyboardInterrupt:
        progress(f"interrupted; worker logs: {folder}")
        return 130
    progress(f"{name}: done in {time.monotonic() - began:.1f} s")
    if log_dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
