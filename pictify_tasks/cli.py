"""``celery -A proj pictify ...``: what an operator does with batches by hand.

Registered as a ``celery.commands`` entry point, so Celery loads the user's
app (``-A``) and hands it over in ``ctx.obj``. Each command says what went
wrong in one line on stderr and exits with a code of its own
(:class:`ExitCode`), so scripts can tell a bad id from a missing key or an
unreachable store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click
from celery import current_app
from celery.exceptions import TimeoutError as ResultTimeout

from pictify_tasks._runtime import Runtime, runtime_for
from pictify_tasks.cli_support import (
    CliError,
    ExitCode,
    Report,
    api_view,
    broker_view,
    cli_errors,
    ledger_view,
    store_view,
)
from pictify_tasks.ids import validate_id
from pictify_tasks.names import CANCEL_BATCH, CANCEL_WORKFLOW
from pictify_tasks.revoke.links import Scope
from pictify_tasks.store import MemoryStore
from pictify_tasks.store.base import START_PREFIX
from pictify_tasks.store.records import WantedCancel
from pictify_tasks.tasks.cancelling import MAX_REASON

__all__ = ["ExitCode", "pictify"]

_EPILOG = (
    "Exit codes: 0 ok, 1 a cancel or a check failed, 2 bad usage, 3 a bad id, "
    "4 no API key (or the API refused it), 5 the state store is unreachable, "
    "6 the broker is unreachable, 7 the API is unreachable or failing, "
    "8 the configuration is invalid or the package is not installed on the app."
)


@click.group(name="pictify", epilog=_EPILOG)
def pictify() -> None:
    """Cancel Pictify batches, inspect the ledger and the links, check the set-up."""


def _app() -> Any:
    """The app Celery loaded for ``-A`` (or the current app, outside ``celery``)."""
    context = click.get_current_context()
    app = getattr(context.find_object(object), "app", None)
    return app if app is not None else current_app._get_current_object()


def _runtime() -> Runtime:
    return runtime_for(_app())


def _runtime_with_store() -> Runtime:
    """The runtime, warning when its store is this process's memory (not the workers')."""
    runtime = _runtime()
    with cli_errors():
        if isinstance(runtime.store, MemoryStore):
            click.echo(
                "note: the ledger and links are in this process's memory, not your workers': "
                "set pictify_state_url to their Redis",
                err=True,
            )
    return runtime


def _task(name: str) -> Any:
    app = _app()
    if name not in app.tasks:
        raise CliError(
            ExitCode.CONFIG,
            f"task {name} is not registered on app {app.main!r}: "
            "call pictify_tasks.install(app) where the app is created",
        )
    return app.tasks[name]


def _ids(values: Sequence[str], kind: str) -> list[str]:
    """Every id checked before anything is sent: one bad id sends nothing."""
    with cli_errors():
        return [validate_id(value, kind=kind) for value in values]


def _wait(result: Any, timeout: float) -> tuple[bool, Any]:
    """(succeeded, value or error) of one task, within ``timeout`` seconds."""
    with cli_errors():
        try:
            value = result.get(timeout=timeout, propagate=False)
        except ResultTimeout:  # Celery's own, not the builtin TimeoutError
            return False, f"no result within {timeout:g} s (is a worker consuming its queue?)"
        except NotImplementedError as exc:  # Celery's DisabledBackend
            raise CliError(ExitCode.CONFIG, f"--wait needs a result backend: {exc}") from None
    if isinstance(value, BaseException):
        return False, f"{type(value).__name__}: {value}"
    return True, value


def _reason(context: click.Context, parameter: click.Parameter, value: str) -> str:
    """Checked before anything is recorded or published: the sweep re-sends it too."""
    if len(value) > MAX_REASON:
        raise click.BadParameter(f"at most {MAX_REASON} characters, got {len(value)}")
    return value


_WAIT = click.option(
    "--wait", is_flag=True, help="Wait for each result and print it (needs a result backend)."
)
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds --wait waits for each result.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@pictify.command()
@click.argument("batch_ids", nargs=-1, required=True, metavar="BATCH_ID...")
@click.option(
    "--reason",
    default="asked with celery pictify cancel",
    show_default=True,
    callback=_reason,
    help=f"Why, as it shows in the task's arguments and the worker's log "
    f"(at most {MAX_REASON} characters).",
)
@_WAIT
@_TIMEOUT
def cancel(batch_ids: tuple[str, ...], reason: str, wait: bool, timeout: float) -> None:
    """Enqueue one pictify.cancel_batch per BATCH_ID (run by your workers).

    As the package's own cancels are: all recorded as wanted in one call
    first (the sweep re-sends one whose message is lost), then published.
    """
    ids = _ids(batch_ids, "batch id")
    _task(CANCEL_BATCH)  # installed on this app, or a configuration error
    runtime = _runtime()
    asked = time.time()
    results: list[Any] = []

    def published(item: WantedCancel, result: Any) -> None:
        results.append(result)
        click.echo(f"{item.batch_id}: enqueued (task {result.id})")

    with cli_errors():
        wanted = [WantedCancel(batch_id, asked, reason) for batch_id in ids]
        runtime.publisher.cancels(wanted, published)
    if not wait:
        return
    failed = 0
    for batch_id, result in zip(ids, results):
        ok, value = _wait(result, timeout)
        if ok:
            click.echo(
                f"{batch_id}: {value['outcome']} (status {value['status']}, "
                f"{value['attempts']} attempt(s)): {value['message']}"
            )
        else:
            failed += 1
            click.echo(f"{batch_id}: failed: {value}", err=True)
    if failed:
        raise CliError(ExitCode.FAILED, f"{failed} of {len(ids)} cancel(s) did not succeed")


@pictify.command()
@click.argument("batch_id")
@_JSON
def status(batch_id: str, as_json: bool) -> None:
    """Show a batch as the API sees it and as the cancel ledger recorded it."""
    [batch_id] = _ids([batch_id], "batch id")
    runtime = _runtime_with_store()
    with cli_errors():
        if runtime.settings.api_key is None:
            raise CliError(ExitCode.NO_KEY, _NO_KEY)
    report = Report()
    ledger = report.run("ledger", lambda: ledger_view(runtime.store.cancel_state(batch_id)))
    api = report.run("api", lambda: api_view(runtime.client, batch_id, runtime.limiter))
    if as_json:
        click.echo(json.dumps({"batch_id": batch_id, "api": api, "ledger": ledger}, indent=2))
    else:
        click.echo(f"batch {batch_id}")
        click.echo(f"  api:    {_describe_api(api)}")
        click.echo(f"  ledger: {_describe_ledger(ledger)}")
    report.exit()


def _describe_api(view: dict[str, Any] | None) -> str:
    if view is None:
        return "(could not be read)"
    if view.get("found") is False:
        return "not found (the API does not know this batch, or its results expired)"
    done, total = view.get("completed_items"), view.get("total_items")
    items = f", {done}/{total} items done" if total is not None else ""
    failed = f", {view['failed_items']} failed" if view.get("failed_items") else ""
    return f"{view['status']}{items}{failed}"


def _describe_ledger(view: dict[str, Any] | None) -> str:
    if view is None:
        return "(could not be read)"
    outcome, failure = view["outcome"], view["failure"]
    if outcome is not None:
        return (
            f"{outcome['outcome']} (status {outcome['status']}, "
            f"{outcome['attempts']} attempt(s)): {outcome['message']}"
        )
    if failure is not None:
        state = "gave up" if failure["final"] else "retrying"
        return (
            f"no outcome; last failure {failure['error']} after {failure['attempts']} "
            f"attempt(s), {state}: {failure['message']}"
        )
    return "no cancel recorded"


@pictify.command()
@click.argument("link_id", metavar="WORKFLOW_OR_TASK_ID")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in Scope]),
    default=None,
    help="Which links to show [default: the app's pictify_revoke_scope].",
)
@_JSON
def links(link_id: str, scope: str | None, as_json: bool) -> None:
    """Show the batches tracked under a workflow or task id, and their state."""
    [link_id] = _ids([link_id], "workflow or task id")
    runtime = _runtime_with_store()
    with cli_errors():
        chosen = Scope(scope) if scope else runtime.settings.revoke_scope
        linked = runtime.store.linked(link_id, chosen)
    entries, saved = linked.entries, linked.items_not_rendered
    batches = {e: s for e, s in entries.items() if not e.startswith(START_PREFIX)}
    starts = sorted(e[len(START_PREFIX) :] for e in entries if e.startswith(START_PREFIX))
    if as_json:
        view = {
            "id": link_id,
            "scope": str(chosen),
            "batches": batches,
            "starts": starts,
            "items_not_rendered": saved,
        }
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    if not entries:
        click.echo(f"nothing is linked under {link_id} (scope {chosen})")
        return
    click.echo(f"linked under {link_id} (scope {chosen}):")
    for batch_id in sorted(batches):
        click.echo(f"  {batch_id}  {batches[batch_id]}")
    for start_id in starts:
        click.echo(f"  start {start_id}  started, batch id not known yet")
    if saved is not None:  # savings are counted per workflow, not per task
        click.echo(f"renders saved: {saved} item(s) not rendered")


@pictify.command("cancel-workflow")
@click.argument("link_id", metavar="WORKFLOW_OR_TASK_ID")
@_WAIT
@_TIMEOUT
def cancel_workflow(link_id: str, wait: bool, timeout: float) -> None:
    """Enqueue pictify.cancel_workflow: cancel every running batch linked to the id.

    The id is also remembered as revoked, so a batch linked under it later is
    cancelled as soon as it is linked.
    """
    [link_id] = _ids([link_id], "workflow or task id")
    task = _task(CANCEL_WORKFLOW)
    with cli_errors():
        result = task.delay(link_id)
    click.echo(f"{link_id}: enqueued (task {result.id})")
    if not wait:
        return
    ok, value = _wait(result, timeout)
    if not ok:
        raise CliError(ExitCode.FAILED, f"{link_id}: {value}")
    click.echo(f"{link_id}: cancels enqueued for {len(value)} batch(es): {' '.join(value)}")


@pictify.command()
def check() -> None:
    """Check the configuration, the API key, the state store and the broker."""
    app = _app()
    runtime = _runtime()
    report = Report()
    # The line a worker logs at start: an operator compares the two.
    shown = report.run("configuration", lambda: runtime.reload().describe())
    if shown is None:
        report.exit()  # nothing else can be checked without settings
    report.check(
        "tasks",
        CANCEL_BATCH in app.tasks,
        f"installed on app {app.main!r}",
        ExitCode.CONFIG,
        "pictify_tasks.install(app) was not called on this app",
    )
    key = runtime.settings.api_key
    if report.check("api key", key is not None, "set", ExitCode.NO_KEY, _NO_KEY):
        report.run(
            "api",
            lambda: api_view(runtime.client, "pictify-check-key", runtime.limiter, check=True),
        )
    report.run("state store", lambda: store_view(runtime.store, runtime.settings))
    report.run("broker", lambda: broker_view(app))
    report.exit()


_NO_KEY = "no API key: set pictify_api_key (CELERY_PICTIFY_API_KEY) or PICTIFY_API_KEY"


@pictify.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def emulator(options: tuple[str, ...]) -> None:
    """Serve the Pictify API emulator (--port, --api-key...; --help lists them)."""
    from pictify_tasks.testing.emulator import main

    raise SystemExit(main(list(options)))
