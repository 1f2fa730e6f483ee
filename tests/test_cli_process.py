"""The real ``celery -A ... pictify`` command, against Redis, a real worker and the emulator."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import Any

import pytest
import requests

from pictify_tasks.cli import ExitCode
from pictify_tasks.testing import assert_cancelled_once
from pictify_tasks.testing.worker import BROKER_ENV, QUEUE_ENV, RESULT_ENV
from tests.workers import ROOT, Setup, run_python

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def celery(setup: Setup, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``celery -A tests.worker_app pictify ARGS`` with the worker's settings."""
    full_env = {
        **os.environ,
        **setup.env,
        BROKER_ENV: setup.broker_url,
        RESULT_ENV: setup.result_url,
        QUEUE_ENV: setup.queue,
        "PYTHONPATH": str(ROOT),
        **env,
    }
    return run_python(
        *("-m", "celery", "-A", "tests.worker_app", "pictify", *args), cwd=ROOT, env=full_env
    )


def expect(done: subprocess.CompletedProcess[str], code: int, *texts: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    for text in texts:
        assert text in output, output


def test_cancel_status_and_check_through_the_celery_command(redis_setup: Setup) -> None:
    emulator = redis_setup.emulator
    batch_id = emulator.create_batch(total_items=4)
    expect(celery(redis_setup, "check"), ExitCode.OK, "ok    state store: redis://", "ok    api:")
    expect(celery(redis_setup, "cancel", batch_id, "--wait"), 0, f"{batch_id}: cancelled")
    assert_cancelled_once(emulator, batch_id)
    expect(
        celery(redis_setup, "status", batch_id),
        ExitCode.OK,
        "api:    cancelled",
        "ledger: cancelled (status cancelled, 1 attempt(s))",
    )
    assert redis_setup.env["PICTIFY_API_KEY"] not in celery(redis_setup, "check").stdout


def test_links_and_cancel_workflow_of_a_started_batch(redis_setup: Setup) -> None:
    start = redis_setup.app.tasks["pictify.start_batch"].delay("tpl_cli", [{"n": 1}])
    batch_id = start.get(timeout=30)
    expect(celery(redis_setup, "links", start.id), ExitCode.OK, f"{batch_id}  running")
    expect(
        celery(redis_setup, "cancel-workflow", start.id, "--wait"),
        ExitCode.OK,
        f"cancels enqueued for 1 batch(es): {batch_id}",
    )
    assert_cancelled_once(redis_setup.emulator, batch_id, timeout=30)
    expect(celery(redis_setup, "links", start.id), ExitCode.OK, f"{batch_id}  finished")


@pytest.mark.parametrize(
    ("args", "env", "code"),
    [
        (("status", "a/b"), {}, ExitCode.BAD_ID),
        (("status", "b1"), {"PICTIFY_API_KEY": ""}, ExitCode.NO_KEY),
        (("links", "wf"), {"PICTIFY_STATE_URL": "redis://127.0.0.1:1/0"}, ExitCode.STORE),
        (("check",), {"PICTIFY_TIMEOUT": "nan"}, ExitCode.CONFIG),
    ],
)
def test_exit_codes_of_the_real_command(
    redis_setup: Setup, args: tuple[str, ...], env: dict[str, str], code: ExitCode
) -> None:
    done = celery(redis_setup, *args, **env)
    assert done.returncode == code, done.stdout + done.stderr


def test_the_emulator_command_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "pictify", "emulator", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once it listens
        found: Any = re.search(r"listening on (http://\S+)", line)
        assert found, line
        answer = requests.get(f"{found.group(1)}/templates/batch/b1/results", timeout=5)
        assert answer.status_code == 401  # the emulator's auth answered
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
