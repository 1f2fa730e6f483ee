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
import tempfile
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
    app: str | Celery,
    *,
    broker_url: str | None = None,
    result_url: str | None = None,
    queue: str | None = None,
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    concurrency: int = 4,
    name: str | None = None,
    pythonpath: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[WorkerProcess]:
    """A real worker of ``app``, ready when this yields (it answered a ping); stopped after.

    ``app`` is your own Celery app, or what ``celery -A`` takes
    (``"proj.celery:app"``). For an app object the worker runs the module that
    defines it, with that module's folder on its path, and the broker to ping
    is the app's own. ``env`` adds environment variables (the worker's
    ``PICTIFY_*`` settings, see :func:`pictify_tasks.testing.emulator_env`);
    ``queue`` makes it consume only that queue. ``broker_url``,
    ``result_url`` and ``queue`` are also handed to a module that builds its
    app with :func:`worker_app`.

    ``ready_after`` is the time from spawning the process to its first ping reply.
    """
    target, found_path = _target(app)
    if broker_url is None:
        if isinstance(app, str):
            raise ValueError("run_worker() needs broker_url= when app is given by name")
        broker_url = str(app.conf.broker_url or "amqp://")
    name = name or f"pictify-{uuid.uuid4().hex[:8]}@localhost"
    log_dir = Path(tempfile.mkdtemp(prefix="pictify-worker-")) if log_dir is None else log_dir
    log_path = log_dir / f"{name.split('@')[0]}.log"
    given = {BROKER_ENV: broker_url, RESULT_ENV: result_url, QUEUE_ENV: queue}
    full_env = {**os.environ, **(env or {}), **{k: v for k, v in given.items() if v is not None}}
    paths = [*pythonpath, *found_path]
    if paths:
        full_env["PYTHONPATH"] = os.pathsep.join([*paths, full_env.get("PYTHONPATH", "")])
    command = [
        sys.executable, "-m", "celery", "-A", target, "worker",
        "--loglevel", "INFO", "--pool", "prefork", "--concurrency", str(concurrency),
        "--hostname", name, "--without-gossip", "--without-heartbeat",
        *(["--queues", queue] if queue else []),
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


def _target(app: str | Celery) -> tuple[str, list[str]]:
    """What ``celery -A`` takes for ``app``, and the folder its module is imported from.

    An app object is found where a module holds it (``proj.celery:app``); an
    app made in ``__main__`` cannot be imported by another process.
    """
    if isinstance(app, str):
        return app, []
    # Your modules first: Celery's own keep the current app in module globals too.
    modules = sorted(
        (name, module)
        for name, module in list(sys.modules.items())
        if module is not None
        and not name.startswith("__")  # __main__, __mp_main__
        and name.partition(".")[0] not in _NOT_YOURS
    )
    for module_name, module in modules:
        for attribute, value in list(vars(module).items()):
            if value is app:
                return f"{module_name}:{attribute}", _import_root(module, module_name)
    raise ValueError(
        f"the app {app.main!r} is not held by any importable module (made in __main__?): "
        "pass what `celery -A` takes instead, e.g. run_worker('proj.celery:app', ...)"
    )


#: Top-level packages that may hold a reference to any app, never the one to import.
_NOT_YOURS = frozenset({"celery", "kombu", "billiard", "pictify_tasks", "django", "_pytest"})


def _import_root(module: Any, module_name: str) -> list[str]:
    """The folder from which ``module_name`` is imported (its top package's parent)."""
    location = getattr(module, "__file__", None)
    if not location:
        return []
    path = Path(location).resolve()
    depth = module_name.count(".") + (1 if path.name == "__init__.py" else 0)
    return [str(path.parents[depth])]


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
