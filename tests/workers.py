"""Start and stop real ``celery worker`` subprocesses for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

import pictify_tasks

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def client_app(broker_url: str, result_url: str, queue: str) -> Celery:
    """The caller's side of the test app: same config as the worker's, not installed there."""
    app = Celery("pictify_tests_client", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_url,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
    )
    pictify_tasks.install(app)
    return app


@contextmanager
def run_worker(
    *,
    broker_url: str,
    result_url: str,
    queue: str,
    env: Mapping[str, str],
    log_dir: Path,
    concurrency: int = 4,
    name: str | None = None,
    app_module: str = "tests.worker_app",
    extra_args: tuple[str, ...] = (),
    ready_timeout: float = 60.0,
) -> Iterator[WorkerProcess]:
    """A running worker, ready (it answered a ping) when this yields; stopped after."""
    name = name or f"pictify-{uuid.uuid4().hex[:8]}@localhost"
    log_path = log_dir / f"{name.split('@')[0]}.log"
    full_env = {
        **os.environ,
        **env,
        "PICTIFY_TEST_BROKER_URL": broker_url,
        "PICTIFY_TEST_RESULT_URL": result_url,
        "PICTIFY_TEST_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app_module,
        "worker",
        "--loglevel",
        "INFO",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--hostname",
        name,
        "--queues",
        queue,
        "--without-gossip",
        "--without-heartbeat",
        *extra_args,
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker = WorkerProcess(name, process, log_path)
    try:
        wait_until_ready(worker, broker_url, result_url, queue, ready_timeout)
        yield worker
    finally:
        stop_worker(worker)


def wait_until_ready(
    worker: WorkerProcess, broker_url: str, result_url: str, queue: str, timeout: float
) -> None:
    """Poll ``control.ping`` with a deadline until the worker answers."""
    app = client_app(broker_url, result_url, queue)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited early:\n{worker.log()[-4000:]}")
            if app.control.ping(destination=[worker.name], timeout=0.5):
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


def gather(results: list[Any], timeout: float = 60.0) -> list[Any]:
    """Every result's value, waiting with one shared deadline; errors come back as values."""
    deadline = time.monotonic() + timeout
    values = []
    for result in results:
        try:
            values.append(
                result.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False)
            )
        except Exception as exc:  # a TimeoutError is a value too: the test reports it
            values.append(exc)
    return values
