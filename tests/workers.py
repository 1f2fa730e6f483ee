"""The integration tests' worker set-up: the emulator, a real worker, the caller's app."""

from __future__ import annotations

import os
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

from pictify_tasks.store import RedisStore
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.testing import worker as testing_worker
from pictify_tasks.testing.worker import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
#: A folder holding another version of ``pictify_tasks`` for the workers to run, to
#: check that a test fails on the code before a fix (see CONTRIBUTING in the README).
_OTHER_PACKAGE = [p for p in [os.environ.get("PICTIFY_TEST_WORKER_PACKAGE")] if p]


def client_app(
    broker_url: str, result_url: str, queue: str, state_url: str, *, cluster: bool = False
) -> Celery:
    """The caller's side of the test app: the same broker, queue and state as the worker's."""
    return testing_worker.caller_app(
        "pictify_tests_client",
        broker_url=broker_url,
        result_url=result_url,
        queue=queue,
        pictify_state_url=state_url,
        pictify_state_cluster=cluster,
    )


def run_worker(
    *,
    broker_url: str,
    result_url: str,
    queue: str,
    env: Mapping[str, str],
    log_dir: Path,
    **kwargs: Any,
) -> Any:
    """A worker of the tests' app (``tests.worker_app``), as a context manager."""
    return testing_worker.run_worker(
        "tests.worker_app",
        broker_url=broker_url,
        result_url=result_url,
        queue=queue,
        log_dir=log_dir,
        # PYTHONSAFEPATH: the worker's working folder must not come before the other package.
        env={**env, "PYTHONSAFEPATH": "1"} if _OTHER_PACKAGE else env,
        pythonpath=[*_OTHER_PACKAGE, str(ROOT)],
        **kwargs,
    )


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


@dataclass
class Setup:
    """An emulator, a real worker on one broker, and the caller's app, for one test module."""

    broker: str
    app: Celery
    emulator: PictifyEmulator
    worker: WorkerProcess
    store: RedisStore
    queue: str
    broker_url: str
    result_url: str
    env: dict[str, str]
    log_dir: Path

    def cancel(self, batch_id: str) -> Any:
        return self.app.tasks["pictify.cancel_batch"].delay(batch_id)

    def another_worker(self, **kwargs: Any) -> Any:
        """A second worker on the same broker and queue (a context manager)."""
        return run_worker(
            broker_url=self.broker_url,
            result_url=self.result_url,
            queue=self.queue,
            env=self.env,
            log_dir=self.log_dir,
            **kwargs,
        )


@contextmanager
def worker_setup(
    broker: str,
    broker_url: str,
    redis_url: str,
    log_dir: Path,
    *,
    state_url: str | None = None,
    cluster: bool = False,
    **env_overrides: str,
) -> Iterator[Setup]:
    """Everything a module of worker tests shares; checks the key never reached the log.

    Results go to ``redis_url``; the package's state too, unless ``state_url``
    (a node of a Redis Cluster with ``cluster``).
    """
    queue = f"pictify-tests-{uuid.uuid4().hex[:8]}"
    api_key = f"pk_test_{uuid.uuid4().hex}"
    state_url = state_url or redis_url
    # A prefix per module: its sweep, lock and links never meet another module's.
    prefix = f"pictify-test-{uuid.uuid4().hex[:8]}"
    env = {
        "PICTIFY_API_KEY": api_key,
        "PICTIFY_STATE_URL": state_url,
        "PICTIFY_STATE_PREFIX": prefix,
        "PICTIFY_TIMEOUT": "2",
        "PICTIFY_RETRY_BACKOFF_BASE": "0.05",
        "PICTIFY_RETRY_BACKOFF_MAX": "0.3",
        "PICTIFY_CANCEL_MAX_ATTEMPTS": "4",
        "PICTIFY_STATE_CLUSTER": "1" if cluster else "0",
        **env_overrides,
    }
    with PictifyEmulator(api_key=api_key, items_per_second=0) as emulator:
        env["PICTIFY_BASE_URL"] = emulator.base_url
        with run_worker(
            broker_url=broker_url, result_url=redis_url, queue=queue, env=env, log_dir=log_dir
        ) as worker:
            app = client_app(broker_url, redis_url, queue, state_url, cluster=cluster)
            app.conf.pictify_state_prefix = prefix
            store = RedisStore.from_url(state_url, prefix=prefix, cluster=cluster)
            try:
                yield Setup(
                    broker, app, emulator, worker, store, queue, broker_url, redis_url, env, log_dir
                )
            finally:
                store.close()
                app.close()
        assert api_key not in worker.log(), "the API key leaked into the worker's log"


def run_python(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """This interpreter with ``args``, output captured as text, no stdin, a time limit.

    ``env`` replaces the environment (default: this process's).
    """
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
