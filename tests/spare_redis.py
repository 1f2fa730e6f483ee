"""A Redis server of the test's own, to stop and start: a real state-store outage."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pictify_tasks.testing.redis_server import (
    free_port,
    redis_server_binary,
    start_redis_server,
    wait_for_ping,
)
from tests.conftest import IN_CI

__all__ = ["SpareRedis", "spare_redis"]

HOW_TO = "install redis-server (Debian: apt install redis-server) or put it on PATH"


class SpareRedis:
    """``redis-server`` on a port of its own; :meth:`stop` and :meth:`start` make outages.

    It keeps its data in an append-only file, so a restart is an outage, not a
    loss of state (that would be another fault, with its own guarantees).
    """

    def __init__(self, directory: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            message = f"redis-server is not on PATH: {HOW_TO}"
            if IN_CI:
                pytest.fail(f"CI=true and {message}", pytrace=False)
            pytest.skip(message)
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        durable = ["--appendonly", "yes", "--appendfsync", "always"]
        self._process = start_redis_server(self._binary, self.port, self._directory, durable)
        wait_for_ping(self.port, timeout)

    @property
    def running(self) -> bool:
        return self._process is not None

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


@contextmanager
def spare_redis(directory: Path) -> Iterator[SpareRedis]:
    server = SpareRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
