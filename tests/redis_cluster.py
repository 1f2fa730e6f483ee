"""A real 3-master Redis Cluster of the test session's own, on free local ports.

Started once per session when a test asks for it, stopped at the end. Each
node is a ``redis-server --cluster-enabled yes`` in a folder of its own;
``redis-cli --cluster create`` assigns the slots; the cluster is ready when
every node says ``cluster_state:ok`` (a poll with a deadline).
"""

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

from pictify_tasks.testing.redis_server import free_port, start_redis_server, wait_for_ping
from tests.conftest import IN_CI

NODES = 3
HOW_TO = (
    "install redis-server and redis-cli (Debian: apt install redis-server); the tests then "
    "start the cluster themselves: redis-server --cluster-enabled yes --port P "
    "--cluster-config-file nodes-P.conf (three times), then redis-cli --cluster create "
    "127.0.0.1:P1 127.0.0.1:P2 127.0.0.1:P3 --cluster-yes"
)


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 < 65536 and port not in ports and _bindable(port + 10000):
            ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _binaries() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        message = f"redis-server or redis-cli is not on PATH: {HOW_TO}"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return server, cli


def _wait_until_ok(ports: list[int], deadline: float) -> None:
    """Every node answers ``cluster_state:ok``, or ``RuntimeError`` at the deadline."""
    clients = [redis.Redis(port=port, socket_connect_timeout=0.5) for port in ports]
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if all(c.cluster("INFO").get("cluster_state") == "ok" for c in clients):
                    return
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()
    raise RuntimeError(f"the Redis Cluster on ports {ports} did not reach cluster_state:ok")


@contextmanager
def redis_cluster(directory: Path, timeout: float = 30.0) -> Iterator[str]:
    """A running 3-master cluster; yields the URL of its first node."""
    server, cli = _binaries()
    ports = cluster_ports(NODES)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            clustered = [
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            processes.append(start_redis_server(server, port, directory / str(port), clustered))
        deadline = time.monotonic() + timeout
        for port in ports:
            wait_for_ping(port, max(0.1, deadline - time.monotonic()))
        create = [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]!r}")
        _wait_until_ok(ports, deadline)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
