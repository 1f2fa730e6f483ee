"""What a user's ``mypy --strict`` sees of the public tasks, and that it stays true.

The task objects are Celery proxies, typed by protocols in
:mod:`pictify_tasks.task_types`. A user's file is checked by mypy here, and
each protocol's parameters are compared with the task function's, so a task
that grows a parameter fails this test until its protocol does too.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import pictify_tasks
from pictify_tasks import task_types
from pictify_tasks.names import CANCEL_BATCH, START_BATCH, WAIT_FOR_BATCH
from pictify_tasks.tasks import TASKS
from tests.conftest import require_module

PACKAGE_ROOT = Path(pictify_tasks.__file__).resolve().parent.parent

PROTOCOLS = {
    CANCEL_BATCH: task_types.CancelBatchTask,
    START_BATCH: task_types.StartBatchTask,
    WAIT_FOR_BATCH: task_types.WaitForBatchTask,
}


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter after ``self``."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default) for p in parameters]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_protocol_takes_what_its_task_takes(name: str) -> None:
    task_function = TASKS[name].function
    protocol = PROTOCOLS[name]
    assert _parameters(protocol.delay) == _parameters(task_function), (
        f"{protocol.__name__}.delay differs from the task {name}: update task_types.py"
    )
    assert _parameters(protocol.__call__) == _parameters(task_function)
    returned = inspect.signature(task_function).return_annotation
    assert inspect.signature(protocol.__call__).return_annotation == returned


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("typing-test", broker="memory://")
    app.conf.update(pictify_state_url="memory://")
    pictify_tasks.install(app)
    yield app
    pictify_tasks.uninstall(app)


def test_the_proxies_have_what_their_protocols_promise(app: Celery) -> None:
    for name, proxy in (
        (CANCEL_BATCH, pictify_tasks.cancel_batch),
        (START_BATCH, pictify_tasks.start_batch),
        (WAIT_FOR_BATCH, pictify_tasks.wait_for_batch),
    ):
        assert proxy.name == name
        for member in ("delay", "apply_async", "s", "si"):
            assert callable(getattr(proxy, member)), (name, member)
    result = app.AsyncResult("some-id")
    for member in ("get", "ready", "successful", "failed", "revoke"):
        assert callable(getattr(result, member)), member
    assert result.id == "some-id" and isinstance(type(result).state, property)


USER_CODE = """\
from pictify_tasks import CancelBatchResult, cancel_batch, start_batch, wait_for_batch

result = cancel_batch.delay("batch_1", reason="user asked")
outcome: CancelBatchResult = result.get(timeout=10)
reveal_type(outcome["attempts"])
batch_id: str = start_batch.delay("tpl_1", [{"name": "Ada"}], format="png").get()
progress = wait_for_batch.delay(batch_id, poll_interval=2.5).get()
reveal_type(progress["completed_items"])
signature = wait_for_batch.s(poll_interval=5)

cancel_batch.delay(123)  # error: not a str
cancel_batch.delay("batch_1", reasn="typo")  # error: no such keyword
wait_for_batch.delay("batch_1", poll_interval="5")  # error: not a number
wrong: int = cancel_batch.delay("batch_1").get()  # error: a dict, not an int
"""


def test_mypy_strict_sees_the_tasks_signatures_in_a_users_project(tmp_path: Path) -> None:
    api = require_module("mypy.api")
    (tmp_path / "user_project.py").write_text(USER_CODE)
    config = tmp_path / "mypy.ini"
    config.write_text(
        textwrap.dedent(
            f"""\
            [mypy]
            strict = True
            mypy_path = {PACKAGE_ROOT}
            cache_dir = {tmp_path / "cache"}
            [mypy-celery.*,kombu.*]
            ignore_missing_imports = True
            [mypy-pictify_tasks.*]
            follow_imports = silent
            """
        )
    )
    stdout, stderr, _ = api.run(
        ["--config-file", str(config), "--hide-error-context", str(tmp_path / "user_project.py")]
    )
    lines = [line for line in stdout.splitlines() if "user_project.py" in line]
    notes = {
        int(m[1]): m[2].replace("builtins.", "")  # older mypy spells builtins out
        for line in lines
        if (m := re.search(r":(\d+): note: (.*)", line))
    }
    errors = {int(m[1]) for line in lines if (m := re.search(r":(\d+): error:", line))}
    assert notes[5] == 'Revealed type is "int"', stdout + stderr
    assert notes[8] in ('Revealed type is "int | None"', 'Revealed type is "Union[int, None]"')
    expected = {n for n, text in enumerate(USER_CODE.splitlines(), 1) if "# error" in text}
    assert errors == expected, stdout + stderr
