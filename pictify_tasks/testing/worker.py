"""Run a real ``celery worker`` subprocess for integration tests and benchmarks.

Revocation, redelivery and signals only behave for real in a real worker
process, so tests start one, wait until it answers a ping (a poll with a
deadline, not a sleep), and stop its whole process group afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

__all__ = [
    "WorkerProcess",
    "caller_app",
    "run_worker",
    "stop_worker",
    "wait_until_ready",
    "worker_app",
]

#: How :func:`run_worker` tells the worker's app module where to connect.
BROKER_ENV = "PICTIFY_WORKER_BROKER_URL"
RESULT_ENV = "PICTIFY_WORKER_RESULT_URL"
QUEUE_ENV = "PICTIFY_WORKER_QUEUE"


def _app(main: str, broker_url: str, result_url: str, queue: str, **conf: Any) -> Celery:
    import pictify_tasks

    app = Celery(main, set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_url,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        **conf,
    )
    pictify_tasks.install(app)
    return app


def worker_app(main: str) -> Celery:
    """The app of a worker module started by :func:`run_worker`, installed.

    The broker, results and queue come from the environment that
    :func:`run_worker` sets; the package reads its own ``PICTIFY_*`` settings.
    """
    app = _app(
        main,
        os.environ[BROKER_ENV],
        os.environ[RESULT_ENV],
        os.environ[QUEUE_ENV],
        worker_prefetch_multiplier=1,
        result_expires=600,
    )
    app.set_current()
    return app


def caller_app(main: str, *, broker_url: str, result_url: str, queue: str, **conf: Any) -> Celery:
    """The caller's side of such a worker: same broker, results and queue, installed."""
    return _app(main, broker_url, result_url, queue, **conf)


@dataclass
class WorkerProcess:
    """A running worker: its node name, process and log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    ready_after: float | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def run_worker(
    app_module: str,
    *,
    broker_url: str,
    result_url: str,
    queue: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    concurrency: int = 4,
    name: str | None = None,
    pythonpath: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[WorkerProcess]:
    """A worker of ``app_module`` consuming ``queue``, ready when this yields; stopped after.

    ``app_module`` builds its app with :func:`worker_app`.

    ``ready_after`` is the time from spawning the process to its first ping reply.
    """
    name = name or f"pictify-{uuid.uuid4().hex[:8]}@localhost"
    log_path = log_dir / f"{name.split('@')[0]}.log"
    full_env = {
        **os.environ,
        **(env or {}),
        BROKER_ENV: broker_url,
        RESULT_ENV: result_url,
        QUEUE_ENV: queue,
    }
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([*pythonpath, full_env.get("PYTHONPATH", "")])
    command = [
        sys.executable, "-m", "celery", "-A", app_module, "worker",
        "--loglevel", "INFO", "--pool", "prefork", "--concurrency", str(concurrency),
        "--hostname", name, "--queues", queue, "--without-gossip", "--without-heartbeat",
        *extra_args,
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker = WorkerProcess(name, process, log_path, started)
    try:
        wait_until_ready(worker, broker_url, ready_timeout)
        yield worker
    finally:
        stop_worker(worker)


def wait_until_ready(worker: WorkerProcess, broker_url: str, timeout: float) -> None:
    """Poll ``control.ping`` with a deadline until the worker answers."""
    app = Celery("pictify-ping", broker=broker_url, set_as_current=False)
    deadline = worker.started + timeout
    try:
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited early:\n{worker.log()[-4000:]}")
            # A short timeout: readiness is known to ~50 ms, fine enough to time start-up.
            if app.control.ping(destination=[worker.name], timeout=0.05):
                worker.ready_after = time.monotonic() - worker.started
                return
        raise RuntimeError(f"worker {worker.name} not ready in {timeout}s:\n{worker.log()[-4000:]}")
    finally:
        app.close()


def stop_worker(worker: WorkerProcess, timeout: float = 20.0) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL of the whole process group if it hangs."""
    if worker.process.poll() is None:
        os.killpg(worker.process.pid, signal.SIGTERM)
        try:
            worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):  # children left by a killed main process
        os.killpg(worker.process.pid, signal.SIGKILL)
