"""Shared fixtures: real services (skip on a laptop, fail under CI), the emulator."""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import fakeredis
import pytest
import redis
from redis.cluster import RedisCluster

from pictify_tasks.store import MemoryStore, RedisStore, StateStore
from pictify_tasks.testing import PictifyEmulator
from tests.workers import Setup, worker_setup

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("PICTIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("PICTIFY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

HOW_TO_START = {
    "Redis": (
        "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
        '--save "" --appendonly no (or set PICTIFY_TEST_REDIS_URL)'
    ),
    "RabbitMQ": "start it with: rabbitmq-server -detached (or set PICTIFY_TEST_AMQP_URL)",
}


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    default_port = 6379 if parts.scheme.startswith("redis") else 5672
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2.0
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """``url`` if the service answers; else skip (laptop) or fail (CI) saying how to start it."""
    if _answers(url):
        return url
    message = f"{name} does not answer at {url}: {HOW_TO_START[name]}"
    if IN_CI:
        pytest.fail(f"CI=true and a service is missing: {message}", pytrace=False)
    pytest.skip(message)


def require_module(name: str) -> Any:
    """Import ``name``; skip without it (laptop), fail under CI (the test extra brings it)."""
    if IN_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed: pip install -e '.[test]'")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_service("Redis", REDIS_URL)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return require_service("RabbitMQ", AMQP_URL)


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def emulator() -> Iterator[PictifyEmulator]:
    """An emulator of its own for each test, batches frozen (tests move them by hand)."""
    with PictifyEmulator(items_per_second=0) as emulator:
        yield emulator


@pytest.fixture
def key_prefix() -> str:
    """A prefix of its own for each test, so tests sharing a Redis never collide."""
    return f"pictify-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 3-master Redis Cluster for the session (see ``tests/redis_cluster.py``)."""
    from tests.redis_cluster import redis_cluster

    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
def store(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[StateStore]:
    """The same store contract in process, on fakeredis, a real server and a real cluster."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "fakeredis":
        yield RedisStore(fakeredis.FakeRedis(), prefix=key_prefix)
        return
    if request.param == "cluster":
        cluster = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
        yield RedisStore(cluster, prefix=key_prefix)
        cluster.close()  # the cluster itself goes at the end of the session
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisStore(client, prefix=key_prefix)
    for key in client.scan_iter(f"{key_prefix}:*"):
        client.delete(key)
    client.close()


# -- real workers: one per broker for a module of tests -----------------------------------


def _module_worker(
    request: pytest.FixtureRequest, broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """A worker for one test module; the module's ``WORKER_ENV`` dict adds settings."""
    redis_url = request.getfixturevalue("redis_url")
    broker_url = redis_url if broker == "redis" else request.getfixturevalue("amqp_url")
    log_dir = tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-{broker}")
    env = dict(getattr(request.module, "WORKER_ENV", {}))
    with worker_setup(broker, broker_url, redis_url, log_dir, **env) as setup:
        yield setup


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """The emulator and a real worker on each broker in turn (state and results on Redis)."""
    yield from _module_worker(request, request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def redis_setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """The emulator and a real worker on Redis, for what does not depend on the broker."""
    yield from _module_worker(request, "redis", tmp_path_factory)


# -- revoke-to-cancel timings, printed at the end of the run ---------------------------

REVOKE_TIMINGS: dict[str, list[float]] = {}


@pytest.fixture(scope="session")
def revoke_timings() -> dict[str, list[float]]:
    """Record ``seconds`` from a revoke call to the emulator receiving the cancel, per path."""
    return REVOKE_TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REVOKE_TIMINGS:
        return
    terminalreporter.section("revoke -> cancel request received (ms; recorded, not asserted)")
    for path, values in sorted(REVOKE_TIMINGS.items()):
        ordered = sorted(v * 1000 for v in values)
        median = ordered[len(ordered) // 2]
        shown = ", ".join(f"{v:.1f}" for v in ordered)
        terminalreporter.write_line(f"{path}: n={len(ordered)} median={median:.1f} [{shown}]")
