"""What every benchmark shares: arguments, workers, the caller's app, one JSON line out.

Each benchmark is a script that prints progress on stderr and exactly one
JSON object as its last line on stdout, with the machine it ran on. ``--quick``
runs a small version of it (the test suite's smoke test); the full run is
what the figures in ``docs/performance.md`` come from. Nothing here asserts a
timing: a benchmark fails only when something it waits for never happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celery
from celery import Celery

import pictify_tasks
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.testing.emulator.routes import cancelled_batch_id
from pictify_tasks.testing.worker import WorkerProcess, caller_app, run_worker

ROOT = Path(__file__).resolve().parent.parent
#: Defaults stay away from the tests' databases; override with --redis-url / --amqp-url.
REDIS_URL = os.environ.get("PICTIFY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
AMQP_URL = os.environ.get("PICTIFY_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
TTL = 600  # seconds the benchmarks' links, outcomes and results stay in Redis
#: Every run keeps its state apart: its sweep never meets another run's wanted cancels.
STATE_PREFIX = f"pictify-bench-{uuid.uuid4().hex[:8]}"


class BenchmarkError(Exception):
    """Something the benchmark waited for never happened: it measured nothing trustworthy."""


@dataclass(frozen=True)
class Options:
    """The arguments every benchmark takes."""

    quick: bool
    redis_url: str
    amqp_url: str
    broker: str
    log_dir: Path

    @property
    def broker_url(self) -> str:
        return self.redis_url if self.broker == "redis" else self.amqp_url


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """Where a figure was measured: the versions it ran with and the cores it had."""
    return {
        "python": platform.python_version(),
        "celery": celery.__version__,
        "cores": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    """Median, nearest-rank p95, min and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    values = (
        ("median", statistics.median(ordered)),
        ("p95", p95),
        ("min", ordered[0]),
        ("max", ordered[-1]),
    )
    return {name: round(value * 1000, 2) for name, value in values}


def worker_env(api_key: str, base_url: str, state_url: str, **extra: str) -> dict[str, str]:
    """The PICTIFY_* settings of a benchmark worker."""
    return {
        "PICTIFY_API_KEY": api_key,
        "PICTIFY_BASE_URL": base_url,
        "PICTIFY_STATE_URL": state_url,
        "PICTIFY_STATE_PREFIX": STATE_PREFIX,
        "PICTIFY_LINK_TTL": str(TTL),
        "PICTIFY_OUTCOME_TTL": str(TTL),
        **extra,
    }


def bench_caller(options: Options, queue: str, state_url: str | None = None, **conf: Any) -> Celery:
    """The caller's app: the workers' broker, results, queue and state."""
    return caller_app(
        "pictify_bench_caller",
        broker_url=options.broker_url,
        result_url=options.redis_url,
        queue=queue,
        pictify_state_url=state_url or options.redis_url,
        pictify_state_prefix=STATE_PREFIX,
        pictify_link_ttl=TTL,
        pictify_outcome_ttl=TTL,
        result_expires=TTL,
        **conf,
    )


@contextmanager
def bench_workers(
    options: Options,
    queue: str,
    env: Mapping[str, str],
    *,
    count: int = 1,
    concurrency: int = 2,
) -> Iterator[list[WorkerProcess]]:
    """``count`` workers of ``benchmarks.bench_app``, all ready when entered, stopped on exit."""
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                run_worker(
                    "benchmarks.bench_app",
                    broker_url=options.broker_url,
                    result_url=options.redis_url,
                    queue=queue,
                    log_dir=options.log_dir,
                    env=env,
                    concurrency=concurrency,
                    pythonpath=[str(ROOT)],
                )
            )
            for _ in range(count)
        ]
        yield workers


@dataclass
class Run:
    """One benchmark's emulator, caller app and running workers."""

    options: Options
    emulator: PictifyEmulator
    app: Celery
    workers: list[WorkerProcess]
    queue: str
    env: dict[str, str]
    queues: list[str]

    def more_workers(
        self, queue_name: str, env: Mapping[str, str], **kwargs: Any
    ) -> AbstractContextManager[list[WorkerProcess]]:
        """Workers on a queue of their own (dropped with the run's), with ``env``."""
        queue = f"{self.queue}-{queue_name}"
        if queue not in self.queues:
            self.queues.append(queue)
        return bench_workers(self.options, queue, env, **kwargs)


@contextmanager
def bench_run(
    options: Options,
    name: str,
    *,
    workers: int = 1,
    concurrency: int = 2,
    rate: int | None = None,
    state_url: str | None = None,
    listening: bool = False,
    **env: str,
) -> Iterator[Run]:
    """An emulator (``rate`` requests per one-second window, or unlimited), the caller's
    app and ``workers`` ready workers on a fresh queue and API key; all gone on exit.

    ``listening``: also wait until every worker's revoke listener acts on broadcasts.
    """
    queue = new_queue(name)
    api_key = f"pk_test_{uuid.uuid4().hex}"
    with PictifyEmulator(
        api_key=api_key, items_per_second=0, rate_limit=rate, rate_window=1.0
    ) as emulator:
        full_env = worker_env(api_key, emulator.base_url, state_url or options.redis_url, **env)
        app = bench_caller(options, queue, state_url)
        run = None
        try:
            with bench_workers(
                options, queue, full_env, count=workers, concurrency=concurrency
            ) as started:
                if listening:
                    wait_for_listeners(app, emulator, started)
                run = Run(options, emulator, app, started, queue, full_env, [queue])
                yield run
        finally:
            drop_queues(app, *(run.queues if run is not None else [queue]))
            app.close()


def drop_queues(app: Celery, *names: str) -> None:
    """Delete a run's durable queues, never hiding an earlier error."""
    with contextlib.suppress(Exception), app.connection_for_write() as connection:
        for name in names:
            # Declared first: a Redis channel only deletes the queues it knows.
            declared = app.amqp.queues[name].bind(connection.default_channel)
            declared.declare()
            declared.delete()


def new_queue(name: str) -> str:
    return f"pictify-bench-{name}-{uuid.uuid4().hex[:8]}"


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> None:
    """Poll ``check`` until it holds; :class:`BenchmarkError` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


def main(
    description: str,
    run: Callable[[Options, argparse.Namespace], dict[str, Any]],
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
    argv: list[str] | None = None,
) -> int:
    """Parse the common arguments, run, print the JSON line; 1 on a benchmark error."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a small run (the smoke test)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="broker, results and state")
    parser.add_argument("--amqp-url", default=AMQP_URL)
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--log-dir", type=Path, help="keep the worker logs here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the context managers stop every worker.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="pictify-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    options = Options(args.quick, args.redis_url, args.amqp_url, args.broker, log_dir)
    began = time.monotonic()
    try:
        result = run(options, args)
    except BenchmarkError as exc:
        progress(f"benchmark failed: {exc}\nworker logs: {log_dir}")
        return 1
    except KeyboardInterrupt:
        progress(f"interrupted; worker logs: {log_dir}")
        return 130
    progress(f"done in {time.monotonic() - began:.1f} s")
    if args.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(json.dumps({**result, "quick": options.quick, "machine": machine()}))
    return 0


def first_cancels(emulator: PictifyEmulator, batch_ids: Sequence[str]) -> dict[str, float]:
    """When (emulator's monotonic clock) each batch got its first effective cancel."""
    wanted = set(batch_ids)
    arrivals: dict[str, float] = {}
    for record in emulator.cancel_requests():
        batch_id = cancelled_batch_id(record.method, record.path)
        if batch_id in wanted and record.status == 200 and not record.replayed:
            arrivals.setdefault(batch_id, record.monotonic)
    return arrivals


def wait_for_cancels(
    emulator: PictifyEmulator, batch_ids: Sequence[str], timeout: float, every: float = 0.02
) -> dict[str, float]:
    """Every batch's first effective cancel arrival, once all have arrived."""
    arrivals: dict[str, float] = {}

    def all_arrived() -> bool:
        arrivals.update(first_cancels(emulator, batch_ids))
        return len(arrivals) == len(batch_ids)

    wait_until(all_arrived, timeout, f"the cancels of {len(batch_ids)} batches", every)
    return arrivals


def refused(emulator: PictifyEmulator, since: float = 0.0) -> int:
    """Requests the emulator answered 429 (arrived at or after ``since``, monotonic)."""
    return sum(1 for r in emulator.requests if r.status == 429 and r.monotonic >= since)


def tracked_workflow(app: Celery, emulator: PictifyEmulator, batches: int) -> tuple[str, list[str]]:
    """A workflow id with ``batches`` running batches linked under it, as a caller links them."""
    workflow_id = f"bench-{uuid.uuid4().hex}"
    batch_ids = [emulator.create_batch() for _ in range(batches)]
    for batch_id in batch_ids:
        pictify_tasks.track_batch(batch_id, workflow_id=workflow_id, app=app)
    return workflow_id, batch_ids


def wait_for_listeners(
    app: Celery, emulator: PictifyEmulator, workers: Sequence[WorkerProcess], timeout: float = 30
) -> None:
    """Re-broadcast a revoke until every worker's listener has acted on it.

    A ping reply shows a worker is up, not that its listener has subscribed:
    a broadcast sent before that is not queued for it.
    """
    workflow_id, [batch_id] = tracked_workflow(app, emulator, 1)
    heard = f"cancelling batches ['{batch_id}']"
    deadline = time.monotonic() + timeout
    while not all(heard in worker.log() for worker in workers):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the workers' revoke listeners did not act within {timeout:g} s")
        app.control.revoke(workflow_id)
        time.sleep(0.2)
