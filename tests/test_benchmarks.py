"""Every benchmark runs in its quick mode and prints one JSON object last: a smoke test.

Nothing here looks at a timing; the figures come from full runs on a quiet
machine (docs/performance.md). The benchmarks use this suite's Redis and
RabbitMQ, with queues, keys and API keys of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.worker

#: The keys each benchmark's JSON must carry (besides ``quick`` and ``machine``).
EXPECTED = {
    "fanout_limit": {"elapsed_s", "ideal_s", "ratio_to_ideal", "requests_429"},
    "cancels_first": {
        "elapsed_s",
        "ideal_s",
        "ratio_to_ideal",
        "requests_429",
        "polls_per_s_before",
        "polls_per_s_during",
    },
    "throughput": {"tasks_per_s", "ratio_pictify_to_naive", "ratio_pictify_to_noop"},
    "revoke_latency": {"broadcast_ms", "helper_ms", "ping_ms", "startup_s"},
    "store_cost": {"per_operation", "memory_10k_tracked_batches", "worker"},
    "webhooks": {"polling", "webhooks", "poll_interval_s", "safety_poll_s"},
    "http_call_cost": {"cpu_us_per_call", "requests_work_us_per_call"},
}


def test_every_benchmark_is_smoke_tested() -> None:
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - {"common", "bench_app"}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_quick_run_prints_one_json_object_last(
    name: str, redis_url: str, amqp_url: str, tmp_path: Path
) -> None:
    command = [
        sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick",
        "--redis-url", redis_url, "--amqp-url", amqp_url, "--log-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ)
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-3000:]}"
    last = done.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["benchmark"] == name
    assert result["quick"] is True
    assert EXPECTED[name] | {"machine"} <= set(result)
