"""``celery pictify``: each command through click's runner, on an in-process worker.

The app uses Celery's in-memory broker and an embedded worker (threads), so
these tests need no service; ``test_cli_process.py`` runs the real ``celery``
command against Redis and a real worker.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from click.testing import CliRunner, Result

import pictify_tasks
from pictify_tasks import configure
from pictify_tasks._runtime import runtime_for
from pictify_tasks.cli import ExitCode, pictify
from pictify_tasks.cli_support import take_token
from pictify_tasks.ratelimit import Priority
from pictify_tasks.retry import NoTokenInTimeError
from pictify_tasks.testing import PictifyEmulator, assert_cancelled_once, use_emulator
from tests.workflows import eventually

CLOSED = "127.0.0.1:1"  # nothing listens on port 1: refused at once


@pytest.fixture(scope="module")
def emulator() -> Iterator[PictifyEmulator]:
    with PictifyEmulator(items_per_second=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def app(emulator: PictifyEmulator) -> Iterator[Celery]:
    app = Celery("cli-test", broker="memory://localhost/", backend="cache+memory://")
    app.conf.update(
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.01},
        pictify_retry_backoff_base=0.05,
        pictify_retry_backoff_max=0.1,
        pictify_cancel_max_attempts=2,
    )
    pictify_tasks.install(app)
    use_emulator(app, emulator)
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False):
        yield app
    pictify_tasks.uninstall(app)


@pytest.fixture(autouse=True)
def fresh(app: Celery, emulator: PictifyEmulator) -> None:
    """Each test starts from the emulator and a fresh in-memory ledger."""
    emulator.reset()
    use_emulator(app, emulator)


def run(app: Celery, *args: str) -> Result:
    return CliRunner().invoke(pictify, list(args), obj=SimpleNamespace(app=app))


def json_of(result: Result) -> Any:
    """The JSON a command printed (stderr's notes are mixed in by some click versions)."""
    lines = result.output.splitlines()
    return json.loads("\n".join(line for line in lines if not line.startswith("note: ")))


def expect(result: Result, code: ExitCode, *texts: str) -> None:
    assert result.exit_code == code, result.output
    for text in texts:
        assert text in result.output, result.output


# -- cancel -------------------------------------------------------------------------------


def test_cancel_enqueues_and_wait_prints_each_outcome(
    app: Celery, emulator: PictifyEmulator
) -> None:
    running, finished = emulator.create_batch(), emulator.create_batch(status="completed")
    result = run(app, "cancel", running, finished, "--wait", "--timeout", "30")
    expect(result, ExitCode.OK, f"{running}: enqueued (task ", f"{running}: cancelled (status")
    assert f"{finished}: already_finished" in result.output
    assert_cancelled_once(emulator, running)


def test_cancel_without_wait_only_enqueues(app: Celery, emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch()
    expect(run(app, "cancel", batch_id), ExitCode.OK, f"{batch_id}: enqueued")
    assert_cancelled_once(emulator, batch_id)  # the worker ran it


def test_a_failed_cancel_exits_1_and_says_why(app: Celery, emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch()
    emulator.inject(status=503, times=None, path_contains=f"/{batch_id}/cancel")
    result = run(app, "cancel", batch_id, "--wait", "--timeout", "30")
    expect(result, ExitCode.FAILED, f"{batch_id}: failed: ServerError", "1 of 1 cancel(s)")


@pytest.fixture
def idle(emulator: PictifyEmulator) -> Iterator[Celery]:
    """An installed app whose queue no worker consumes: what it publishes stays queued."""
    idle = Celery("cli-idle", broker="memory://", backend="cache+memory://", set_as_current=False)
    idle.conf.task_default_queue = f"pictify-cli-idle-{uuid.uuid4().hex[:8]}"
    pictify_tasks.install(idle)
    use_emulator(idle, emulator)
    yield idle
    pictify_tasks.uninstall(idle)


def test_a_wait_that_runs_out_says_so_and_exits_1(idle: Celery) -> None:
    """``--wait`` with no worker ends with a message, not a traceback."""
    result = run(idle, "cancel", "b1", "--wait", "--timeout", "0.2")
    expect(result, ExitCode.FAILED, "b1: failed: no result within 0.2 s", "1 of 1 cancel")
    result = run(idle, "cancel-workflow", "wf-idle", "--wait", "--timeout", "0.2")
    expect(result, ExitCode.FAILED, "wf-idle: no result within 0.2 s")
    assert "Traceback" not in result.output


def queued(app: Celery) -> int:
    """The messages waiting in ``app``'s queue."""
    with app.connection_for_read() as connection:
        queue = app.conf.task_default_queue
        return int(connection.default_channel.queue_declare(queue).message_count)


def test_cancel_records_every_id_as_wanted_in_one_call_before_publishing(
    idle: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime_for(idle).store
    calls: list[tuple[list[str], int]] = []
    record = store.want_cancels

    def want_cancels(wanted: Any, ttl: int) -> None:
        calls.append(([w.batch_id for w in wanted], queued(idle)))
        record(wanted, ttl)

    monkeypatch.setattr(store, "want_cancels", want_cancels)
    expect(run(idle, "cancel", "b1", "b2", "--reason", "by hand"), ExitCode.OK, "b2: enqueued")
    assert calls == [(["b1", "b2"], 0)]  # one call, before anything was published
    assert queued(idle) == 2
    # the sweep would re-send both, with their reason, if their messages were lost
    stale = store.take_stale_wanted(time.time() + 1, time.time(), 10)
    assert sorted((w.batch_id, w.reason) for w in stale) == [("b1", "by hand"), ("b2", "by hand")]
    expect(run(idle, "cancel", "b3", "--reason", "x" * 201), ExitCode.USAGE, "at most 200")
    assert len(calls) == 1


def test_one_bad_id_sends_nothing(idle: Celery) -> None:
    """On an app no worker consumes: nothing published stays in the queue to be seen."""
    expect(run(idle, "cancel", "b1", "../etc"), ExitCode.BAD_ID, "may only contain")
    assert "enqueued" not in run(idle, "cancel", "b1", "").output
    assert queued(idle) == 0
    assert runtime_for(idle).store.take_stale_wanted(time.time() + 1, time.time(), 10) == []


def test_an_app_without_install_is_a_configuration_error() -> None:
    bare = Celery("bare", broker="memory://", set_as_current=False)
    expect(run(bare, "cancel", "b1"), ExitCode.CONFIG, "pictify_tasks.install(app)")
    expect(run(bare, "check"), ExitCode.CONFIG, "install(app) was not called")


# -- status -------------------------------------------------------------------------------


def test_status_shows_the_api_and_the_ledger(app: Celery, emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch(total_items=8)
    expect(run(app, "status", batch_id), ExitCode.OK, "api:    processing, 0/8 items done")
    assert (
        "note: the ledger and links are in this process's memory"
        in run(app, "status", batch_id).output
    )
    assert "ledger: no cancel recorded" in run(app, "status", batch_id).output
    run(app, "cancel", batch_id, "--wait")
    result = run(app, "status", batch_id)
    expect(result, ExitCode.OK, "api:    cancelled", "ledger: cancelled (status cancelled, 1 ")
    view = json_of(run(app, "status", batch_id, "--json"))
    assert view["api"]["status"] == "cancelled"
    assert view["ledger"]["outcome"]["outcome"] == "cancelled"


def test_status_of_an_unknown_batch_and_a_failing_cancel(
    app: Celery, emulator: PictifyEmulator
) -> None:
    expect(run(app, "status", "batch_nope"), ExitCode.OK, "not found")
    batch_id = emulator.create_batch()
    emulator.inject(status=503, times=None, path_contains=f"/{batch_id}/cancel")
    run(app, "cancel", batch_id, "--wait", "--timeout", "30")
    expect(run(app, "status", batch_id), ExitCode.OK, "last failure ServerError after 2 attempt")


@pytest.mark.parametrize(
    ("settings", "code", "text"),
    [
        ({"api_key": None}, ExitCode.NO_KEY, "no API key"),
        ({"state_url": f"redis://{CLOSED}/0"}, ExitCode.STORE, "state store is unreachable"),
        ({"base_url": f"http://{CLOSED}"}, ExitCode.API, "PictifyConnectionError"),
        ({"api_key": "pk_test_wrong"}, ExitCode.NO_KEY, "the API refused the key"),
    ],
)
def test_status_exit_codes(
    app: Celery, emulator: PictifyEmulator, settings: dict[str, Any], code: ExitCode, text: str
) -> None:
    configure(app, **settings)
    expect(run(app, "status", emulator.create_batch()), code, text)
    expect(run(app, "status", "bad id"), ExitCode.BAD_ID, "may only contain")


def test_status_and_check_take_their_request_from_the_shared_limit(
    app: Celery, emulator: PictifyEmulator
) -> None:
    batch_id = emulator.create_batch()
    configure(app, rate_limit="1/h")  # one request an hour for this key: the first look's
    try:
        expect(run(app, "check"), ExitCode.OK, "accepted the key")  # it takes the token
        expect(run(app, "status", batch_id), ExitCode.API, "rate limit has no request")
    finally:
        configure(app, rate_limit=None)
    assert len(emulator.requests_matching("GET", "/results")) == 1


class _Limiter:
    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)

    def acquire(self, priority: Priority) -> float:
        assert priority == Priority.POLL  # an operator's look never goes before a cancel
        return self.waits.pop(0)

    def observe(self, status: int, info: object) -> None:
        """Not asked here."""


def test_a_command_waits_for_its_token_within_a_bound() -> None:
    slept: list[float] = []
    take_token(_Limiter(2.5, 0.0), "a look", sleep=slept.append, clock=lambda: 0.0)
    assert slept == [2.5]
    with pytest.raises(NoTokenInTimeError, match=r"for 31\.0s"):
        take_token(_Limiter(31.0), "a look", sleep=slept.append, clock=lambda: 0.0)
    # The bound is on the whole wait, not on each of its turns.
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    slept.clear()
    with pytest.raises(NoTokenInTimeError, match=r"for 20\.0s"):
        take_token(_Limiter(20.0, 20.0, 0.0), "a look", sleep=sleep, clock=lambda: now[0])
    assert slept == [20.0]


# -- links and cancel-workflow ----------------------------------------------------------


def test_links_shows_tracked_batches_and_their_state(
    app: Celery, emulator: PictifyEmulator
) -> None:
    running, done = emulator.create_batch(), emulator.create_batch()
    for batch_id in (running, done):
        pictify_tasks.track_batch(batch_id, workflow_id="wf-links", app=app)
    run(app, "cancel", done, "--wait")
    result = run(app, "links", "wf-links")
    expect(result, ExitCode.OK, f"{running}  running", f"{done}  finished")
    view = json_of(run(app, "links", "wf-links", "--json"))
    assert view == {
        "id": "wf-links",
        "scope": "workflow",
        "batches": {running: "running", done: "finished"},
        "starts": [],
        "items_not_rendered": 0,  # a cancel asked by hand is not the workflow's
    }
    expect(run(app, "links", "wf-other", "--scope", "task"), ExitCode.OK, "nothing is linked")
    result = run(app, "links", "wf-links", "--scope", "task")  # tracked by hand: both scopes
    expect(result, ExitCode.OK, f"{running}  running")
    assert "renders saved" not in result.output  # savings are counted per workflow
    view = json_of(run(app, "links", "wf-links", "--scope", "task", "--json"))
    assert view["items_not_rendered"] is None
    expect(run(app, "links", "a/b"), ExitCode.BAD_ID)
    configure(app, state_url=f"redis://{CLOSED}/0")
    expect(run(app, "links", "wf-links"), ExitCode.STORE, "state store is unreachable")


def test_links_shows_the_renders_a_workflows_cancels_saved(
    app: Celery, emulator: PictifyEmulator
) -> None:
    batch_id = emulator.create_batch(total_items=10)
    pictify_tasks.track_batch(batch_id, workflow_id="wf-saved", app=app)
    runtime_for(app).store.note_progress(batch_id, 3, 10, 600)  # as the last poll saw it
    expect(run(app, "cancel-workflow", "wf-saved", "--wait", "--timeout", "30"), ExitCode.OK)
    # the cancel runs after cancel-workflow enqueued it: look until it is counted
    assert eventually(
        lambda: json_of(run(app, "links", "wf-saved", "--json"))["items_not_rendered"] == 7
    )
    expect(run(app, "links", "wf-saved"), ExitCode.OK, "renders saved: 7 item(s) not rendered")


def test_cancel_workflow_cancels_the_running_batches(
    app: Celery, emulator: PictifyEmulator
) -> None:
    batches = [emulator.create_batch() for _ in range(2)]
    for batch_id in batches:
        pictify_tasks.track_batch(batch_id, workflow_id="wf-cancel", app=app)
    result = run(app, "cancel-workflow", "wf-cancel", "--wait", "--timeout", "30")
    expect(result, ExitCode.OK, "cancels enqueued for 2 batch(es)", *batches)
    for batch_id in batches:
        assert_cancelled_once(emulator, batch_id)
    expect(run(app, "cancel-workflow", ".."), ExitCode.BAD_ID)


# -- check ----------------------------------------------------------------------------------


def test_check_passes_on_a_good_setup(app: Celery, emulator: PictifyEmulator) -> None:
    result = run(app, "check")
    expect(result, ExitCode.OK, "ok    configuration: base_url=http://127.0.0.1:")
    expect(result, ExitCode.OK, "ok    api:", "accepted the key", "ok    broker: memory://")
    assert emulator.api_key not in result.output
    assert f"key=pk_test_***{emulator.api_key[-4:]}" in result.output


@pytest.mark.parametrize(
    ("settings", "code", "text"),
    [
        ({"api_key": None}, ExitCode.NO_KEY, "FAIL  api key: no API key"),
        ({"api_key": "pk_test_wrong"}, ExitCode.NO_KEY, "FAIL  api: the API refused the key"),
        ({"base_url": f"http://{CLOSED}"}, ExitCode.API, "FAIL  api: the API"),
        ({"state_url": f"redis://{CLOSED}/0"}, ExitCode.STORE, "FAIL  state store"),
    ],
)
def test_check_names_the_problem_and_exits_with_its_code(
    app: Celery, settings: dict[str, Any], code: ExitCode, text: str
) -> None:
    configure(app, **settings)
    expect(run(app, "check"), code, text, "ok    broker")


def test_check_exit_codes_for_the_broker_and_bad_settings(emulator: PictifyEmulator) -> None:
    other = Celery("cli-broker", broker=f"redis://{CLOSED}/0", set_as_current=False)
    pictify_tasks.install(other)
    use_emulator(other, emulator)
    try:
        expect(run(other, "check"), ExitCode.BROKER, "FAIL  broker: the broker is unreachable")
        other.conf.pictify_timeout = "inf"
        expect(run(other, "check"), ExitCode.CONFIG, "FAIL  configuration: ")
    finally:
        pictify_tasks.uninstall(other)


def test_the_emulator_command_hands_its_options_to_the_emulator(app: Celery) -> None:
    result = run(app, "emulator", "--help")
    expect(result, ExitCode.OK, "--port", "--api-key", "--quiet")
