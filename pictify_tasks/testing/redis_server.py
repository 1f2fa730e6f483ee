"""A ``redis-server`` of one's own on a free local port: for outages, clusters, clean counts.

Tests stop and start one to make a real store outage, start three as a Redis
Cluster, and the store-cost benchmark reads ``INFO commandstats`` from one
that nobody else uses. Readiness is a ``PING`` polled with a deadline.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

__all__ = ["free_port", "redis_server_binary", "start_redis_server", "wait_for_ping"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def start_redis_server(
    binary: str, port: int, directory: Path, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``redis-server`` on ``127.0.0.1:port``, nothing saved unless ``extra`` says so.

    Its output goes to ``directory/redis.log``; the caller stops the process.
    """
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "no", *extra,
    ]  # fmt: skip
    with open(directory / "redis.log", "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def wait_for_ping(port: int, timeout: float = 10.0) -> None:
    """Return once the server on ``port`` answers ``PING``; ``RuntimeError`` at the deadline."""
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.02)
    finally:
        client.close()
    raise RuntimeError(f"redis-server on port {port} did not answer within {timeout:g} s")
