"""The example projects run as their READMEs say, one command each, against the emulator."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.workers import ROOT, run_python

EXAMPLES = ROOT / "examples"


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run an example's command with its own queue and key prefix on the test Redis."""
    done = run_python(*command, cwd=cwd, env={**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def on_redis(redis_url: str) -> dict[str, str]:
    """Where an example's broker, results and ledger go: the test Redis, keys of its own."""
    unique = f"pictify-example-{uuid.uuid4().hex[:8]}"
    return {
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "CELERY_TASK_DEFAULT_QUEUE": unique,
        "PICTIFY_STATE_PREFIX": unique,
    }


@pytest.mark.redis
@pytest.mark.worker
def test_the_plain_project_runs_with_one_command(redis_url: str) -> None:
    done = run([str(EXAMPLES / "plain" / "run.py")], ROOT, **on_redis(redis_url))
    assert "cancel_batch('batch_" in done.stdout and "-> cancelled" in done.stdout
    assert "ms after the revoke" in done.stdout and done.stdout.endswith("ok\n")


@pytest.mark.redis
@pytest.mark.worker
def test_the_plain_projects_pytest_suite_passes(redis_url: str) -> None:
    done = run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider"], EXAMPLES / "plain", **on_redis(redis_url)
    )
    assert "2 passed" in done.stdout


def test_the_django_projects_tests_pass_in_eager_mode() -> None:
    require_module("django")
    # Eager: no broker is used; memory URLs make sure none is reached.
    memory = {"CELERY_BROKER_URL": "memory://", "CELERY_RESULT_BACKEND": "cache+memory://"}
    done = run(["manage.py", "test", "renders", "-v", "2"], EXAMPLES / "django", **memory)
    assert "Ran 3 tests" in done.stderr and "OK" in done.stderr


@pytest.mark.redis
@pytest.mark.worker
def test_the_django_project_runs_with_one_command(redis_url: str) -> None:
    require_module("django")
    done = run(["manage.py", "pictify_example"], EXAMPLES / "django", **on_redis(redis_url))
    assert "started batch batch_" in done.stdout and "'cancelling': ['batch_" in done.stdout
    assert ": cancelled\n" in done.stdout and done.stdout.endswith("ok\n")
