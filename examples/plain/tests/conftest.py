"""A real worker of ``proj`` for the whole session, pointed at the session's emulator."""

from collections.abc import Iterator

import pytest
from proj.celery import app

from pictify_tasks.testing import PictifyEmulator, emulator_env, use_emulator
from pictify_tasks.testing.worker import WorkerProcess, run_worker


@pytest.fixture(scope="session")
def worker(pictify_emulator_session: PictifyEmulator) -> Iterator[WorkerProcess]:
    pictify_emulator_session.items_per_second = 0  # batches run until a test ends them
    state_url = app.conf.broker_url  # the test and the worker share one ledger
    use_emulator(app, pictify_emulator_session, state_url=state_url)
    env = emulator_env(pictify_emulator_session, state_url=state_url)
    with run_worker(app, env=env, concurrency=2) as process:
        yield process
