"""Store cost and memory: what a tracked batch and a cancel cost Redis, and a worker's RSS.

The package's state goes to a ``redis-server`` of the benchmark's own (a
free port), so that ``INFO commandstats``, ``INFO stats`` and ``INFO memory``
count nothing else; the broker and results stay on ``--redis-url``.

* Per operation, in this process on the package's own code: round trips
  (counted on the client's connection), commands and server CPU time
  (``INFO commandstats``), bytes on the wire (``INFO stats``) and bytes kept
  (``MEMORY USAGE`` of every key it left, and ``used_memory``). Operations: a
  batch tracked with ``track_batch``; a batch's life through ``start_batch``
  and ``wait_for_batch`` (recorded, linked, finished); a cancel (wanted,
  ledger, rate-limit token, the HTTP call, outcome); the token of any other
  request (a start, a poll).
* Memory of 10,000 tracked batches, each linked under the 4 ids of a chain's
  first step.
* The server's CPU time per cancel, and from it the cancels per minute one
  Redis core carries.
* A real worker's RSS over 10,000 cancels (concurrency 1), after a warm-up.
* API requests per batch lifetime, from the adaptive poll interval's model.

    python benchmarks/store_cost.py [--quick] [--cancels 10000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis
from common import BenchmarkError, Options, bench_run, main, progress, wait_for_cancels

from pictify_tasks.cancel import CancelContext, cancel_step
from pictify_tasks.client import PictifyClient
from pictify_tasks.limiter import LimiterConfig, bucket_for
from pictify_tasks.polling import simulate_polls
from pictify_tasks.ratelimit import Priority
from pictify_tasks.retry import RetryPolicy
from pictify_tasks.revoke.links import BatchLinks, links_from_request
from pictify_tasks.store import RedisStore
from pictify_tasks.store.records import StartMade, StartRequest, WantedCancel
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.testing.redis_server import (
    free_port,
    redis_server_binary,
    start_redis_server,
    wait_for_ping,
)

TTL = 3600
#: The benchmark's own reading of the counters, left out of the counts.
NOT_THE_PACKAGES = {"info", "memory", "scan", "config", "ping"}


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one send is one round trip."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def chain_start_links() -> BatchLinks:
    """The links of a batch started by the first step of ``start -> wait -> after``."""
    own = uuid.uuid4().hex
    request = SimpleNamespace(
        id=own,
        root_id=own,
        parent_id=None,
        chain=[{"options": {"task_id": uuid.uuid4().hex}} for _ in range(2)],
    )
    return links_from_request(request)


class Probe:
    """Reads the private Redis's counters around an operation repeated ``n`` times."""

    def __init__(self, admin: redis.Redis) -> None:
        self.admin = admin

    def counters(self) -> dict[str, float]:
        info = self.admin.info("everything")
        values: dict[str, float] = {
            "round_trips": CountingConnection.sent,
            "bytes_in": info["total_net_input_bytes"],
            "bytes_out": info["total_net_output_bytes"],
            "used_memory": info["used_memory"],
            "cpu": info["used_cpu_user"] + info["used_cpu_sys"],
            "calls": 0,
        }
        for name, fields in self.admin.info("commandstats").items():
            if name.removeprefix("cmdstat_").split("|")[0] not in NOT_THE_PACKAGES:
                values["calls"] += fields["calls"]
        return values

    def per_operation(self, operation: Callable[[int], None], n: int) -> dict[str, float]:
        """Each counter's growth over ``n`` runs of ``operation``, per run."""
        idle = self._delta(lambda: None)  # what reading the counters itself costs
        spent = self._delta(lambda: [operation(i) for i in range(n)])
        return {
            "round_trips": round(spent["round_trips"] / n, 2),
            # commands run inside a script count too (INFO commandstats counts them)
            "commands": round((spent["calls"] - idle["calls"]) / n, 2),
            "server_cpu_us": round((spent["cpu"] - idle["cpu"]) * 1e6 / n, 1),
            "bytes_sent": round((spent["bytes_in"] - idle["bytes_in"]) / n, 1),
            "bytes_received": round((spent["bytes_out"] - idle["bytes_out"]) / n, 1),
            "used_memory_bytes": round(spent["used_memory"] / n, 1),
        }

    def _delta(self, action: Callable[[], object]) -> dict[str, float]:
        before = self.counters()
        action()
        after = self.counters()
        return {key: after.get(key, 0) - before.get(key, 0) for key in after}

    def kept_bytes(self, prefix: str) -> int:
        """``MEMORY USAGE`` (exact) of every key under ``prefix``."""
        return sum(
            int(self.admin.memory_usage(key, samples=0) or 0)
            for key in self.admin.scan_iter(f"{prefix}:*", count=1000)
        )


def store_costs(port: int, emulator: PictifyEmulator, n: int, links_n: int) -> dict[str, Any]:
    """Per-operation costs on the package's own code, against the private Redis."""
    pool = redis.ConnectionPool(port=port, connection_class=CountingConnection)
    admin = redis.Redis(port=port)
    probe = Probe(admin)
    results: dict[str, Any] = {}

    def store(prefix: str) -> RedisStore:
        return RedisStore(redis.Redis(connection_pool=pool), prefix=prefix)

    tracked = store("track")
    batch_ids = [f"batch_{uuid.uuid4().hex[:24]}" for _ in range(n)]
    links = [chain_start_links() for _ in range(n)]
    tracked.link_batch("warm-up", links[0], TTL)
    results["tracked_batch"] = probe.per_operation(
        lambda i: tracked.link_batch(batch_ids[i], links[i], TTL), n
    )
    results["tracked_batch"]["kept_bytes"] = round(probe.kept_bytes("track") / n, 1)

    started = store("start")

    def start_lifecycle(i: int) -> None:
        start = StartRequest(f"start-{i}", "tpl_bench", {"variableSets": [{"n": 1}]}, f"k{i}")
        started.begin_start(start, links[i], TTL)
        made = StartMade(start.start_id, batch_ids[i], total_items=1)
        started.finish_start(made, links[i], TTL)
        started.finish_batch(batch_ids[i], TTL)

    results["started_and_waited_batch"] = probe.per_operation(start_lifecycle, n)
    results["started_and_waited_batch"]["kept_bytes"] = round(probe.kept_bytes("start") / n, 1)

    ledger = store("cancel")
    limiter = ledger.rate_limiter(bucket_for(emulator.api_key), LimiterConfig())
    client = PictifyClient(
        emulator.api_key, base_url=emulator.base_url, on_response=limiter.observe
    )
    to_cancel = [emulator.create_batch() for _ in range(n + 1)]

    def cancel(i: int) -> None:
        ledger.want_cancels([WantedCancel(to_cancel[i], time.time(), "bench")], TTL)
        context = CancelContext(
            ledger, lambda: client, RetryPolicy(), 25.0, TTL, time.time(), limiter=limiter
        )
        cancel_step(to_cancel[i], f"owner-{i}", context)

    cancel(n)  # warm-up: scripts loaded, the client's first answer shared
    results["cancel"] = probe.per_operation(cancel, n)
    results["cancel"]["kept_bytes"] = round(probe.kept_bytes("cancel") / n, 1)
    client.close()
    # A start's or a poll's token: one more round trip per request, nothing kept per batch.
    results["token"] = probe.per_operation(lambda i: limiter.acquire(Priority.POLL), n)
    results["token"]["kept_bytes"] = 0.0
    results["limiter_key_bytes"] = int(admin.memory_usage(limiter.key, samples=0) or 0)

    many = store("links")
    before = admin.info("memory")["used_memory"]
    for i in range(links_n):
        many.link_batch(f"batch_{i:08d}", chain_start_links(), TTL)
    used = admin.info("memory")["used_memory"] - before
    scale = 10_000 / links_n
    results["memory_10k_tracked_batches"] = {
        "links_per_batch": len(chain_start_links().pairs()),
        "used_memory_mb": round(used * scale / 1e6, 2),
        "kept_mb": round(probe.kept_bytes("links") * scale / 1e6, 2),
        "measured_batches": links_n,
    }
    admin.close()
    pool.disconnect()
    return results


def vm_rss_kb(pid: int) -> int:
    """The resident memory of a process and its children, in kB (Linux ``/proc``)."""
    total = 0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(child) for child in handle.read().split()]
        for process in (pid, *children):
            with open(f"/proc/{process}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
    except FileNotFoundError as exc:
        raise BenchmarkError(f"the worker's memory cannot be read: {exc}") from None
    return total


def worker_rss(options: Options, state_url: str, warmup: int, cancels: int) -> dict[str, Any]:
    """A real worker's RSS growth over ``cancels`` cancels, after ``warmup`` of them."""
    with bench_run(options, "rss", concurrency=1, state_url=state_url) as bench:
        task = bench.app.tasks["pictify.cancel_batch"]
        pid = bench.workers[0].process.pid

        def run_cancels(count: int) -> None:
            batch_ids = [bench.emulator.create_batch() for _ in range(count)]
            with bench.app.producer_or_acquire() as producer:
                for batch_id in batch_ids:
                    task.apply_async((batch_id,), producer=producer)
            wait_for_cancels(bench.emulator, batch_ids, timeout=120 + count / 20, every=0.25)

        run_cancels(warmup)
        before = vm_rss_kb(pid)
        progress(f"worker RSS {before / 1024:.1f} MB after {warmup}; {cancels} more cancels")
        run_cancels(cancels)
        after = vm_rss_kb(pid)
    return {
        "warmup_cancels": warmup,
        "cancels": cancels,
        "rss_before_mb": round(before / 1024, 2),
        "rss_after_mb": round(after / 1024, 2),
        "rss_growth_mb": round((after - before) / 1024, 2),
    }


def api_requests_per_batch() -> dict[str, Any]:
    """Requests of a batch's life: its start, its polls (adaptive vs fixed), a cancel if revoked."""
    model = {}
    for minutes in (0.5, 5, 10, 30):
        polls, late = simulate_polls(minutes * 60, total=100, poll_interval=5, cap=60)
        model[f"{minutes:g}_min"] = {
            "adaptive_polls": polls,
            "fixed_polls": int(minutes * 60 / 5) + 1,
            "noticed_after_s": round(late, 1),
        }
    return {"poll_interval_s": 5, "cap_s": 60, "start": 1, "cancel_if_revoked": 1, **model}


def run(options: Options, args: argparse.Namespace) -> dict[str, Any]:
    binary = redis_server_binary()
    if binary is None:
        raise BenchmarkError("redis-server is not on PATH: the state needs a server of its own")
    n = 200 if options.quick else args.operations
    links_n = 1000 if options.quick else 10_000
    cancels = 300 if options.quick else args.cancels
    warmup = 50 if options.quick else 1000
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="pictify-bench-redis-"))
    server = start_redis_server(binary, port, directory)
    try:
        wait_for_ping(port)
        state_url = f"redis://127.0.0.1:{port}/0"
        api_key = f"pk_test_{uuid.uuid4().hex}"
        with PictifyEmulator(api_key=api_key, items_per_second=0, rate_limit=None) as emulator:
            progress(f"store costs over {n} operations each")
            costs = store_costs(port, emulator, n, links_n)
        rss = worker_rss(options, state_url, warmup, cancels)
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    # The server's CPU per cancel, read one request at a time: under load Redis serves
    # several requests per wake-up, so a core carries at least this many.
    cpu_us = costs["cancel"]["server_cpu_us"]
    return {
        "benchmark": "store_cost",
        "operations": n,
        "per_operation": {
            k: v
            for k, v in costs.items()
            if k in ("tracked_batch", "started_and_waited_batch", "cancel", "token")
        },
        "limiter_key_bytes": costs["limiter_key_bytes"],
        "memory_10k_tracked_batches": costs["memory_10k_tracked_batches"],
        "redis_cancels_per_minute_one_core": round(60e6 / cpu_us) if cpu_us > 0 else None,
        "worker": rss,
        "api_requests_per_batch": api_requests_per_batch(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operations", type=int, default=2000, help="per measured operation")
    parser.add_argument("--cancels", type=int, default=10_000, help="through the worker")


if __name__ == "__main__":
    raise SystemExit(main(__doc__.split("\n\n")[0], run, add_arguments))
