"""A Redis server of the test's own, to stop and start: a real state-store outage."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import IN_CI

HOW_TO = "install redis-server (Debian: apt install redis-server) or put it on PATH"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpareRedis:
    """``redis-server`` on a port of its own; :meth:`stop` and :meth:`start` make outages.

    It keeps its data in an append-only file, so a restart is an outage, not a
    loss of state (that would be another fault, with its own guarantees).
    """

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
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
        command = [
            self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--dir", str(self._directory),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"the spare redis-server on port {self.port} did not answer")

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
