"""The listener thread: catch-up from the worker's own revoked set, and failures kept in."""

from __future__ import annotations

import logging
import uuid
from typing import Callable

import pytest
from celery import Celery
from celery.worker import state

from pictify_tasks.revoke.links import stamp_link_id
from pictify_tasks.revoke.listener import _ListenerThread


def listener(on_ids: Callable[[list[str]], object]) -> _ListenerThread:
    """A listener thread (not started) whose handler records the ids and says "handled"."""

    def handled(ids: list[str]) -> bool:
        on_ids(ids)
        return True

    return _ListenerThread(Celery("catch-up", set_as_current=False), "node", handled)


def revoke_message(*task_ids: str) -> dict[str, object]:
    return {"method": "revoke", "arguments": {"task_id": list(task_ids)}}


def test_catch_up_handles_the_workers_revoked_ids_once() -> None:
    missed = [f"missed-{uuid.uuid4().hex}" for _ in range(3)]
    heard: list[list[str]] = []
    thread = listener(heard.append)
    for task_id in missed:
        state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert len(heard) == 1 and set(missed) <= set(heard[0])
        thread._catch_up()  # nothing new: nothing handled twice
        assert len(heard) == 1
    finally:
        for task_id in missed:
            state.revoked.discard(task_id)


def test_ids_heard_on_the_wire_are_not_handled_again_by_catch_up() -> None:
    heard: list[list[str]] = []
    thread = listener(heard.append)
    task_id = f"heard-{uuid.uuid4().hex}"
    thread._on_message(revoke_message(task_id), None)
    state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert heard == [[task_id]]
    finally:
        state.revoked.discard(task_id)


def test_a_stamped_revoke_hands_over_the_stamps_link_ids() -> None:
    heard: list[list[str]] = []
    listener(heard.append)._on_message(
        {"method": "revoke_by_stamped_headers", "arguments": {"headers": {"k": ["v1", "v2"]}}},
        None,
    )
    assert heard == [[stamp_link_id("k", "v1"), stamp_link_id("k", "v2")]]


def test_a_failing_handler_or_a_junk_message_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[list[str]] = []

    def handler(ids: list[str]) -> None:
        if "x" in ids:
            raise RuntimeError("store down")
        heard.append(ids)

    thread = listener(handler)
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.listener"):
        thread._on_message(revoke_message("x"), None)
        thread._on_message(object(), None)  # not a control message: ignored, not an error
        thread._on_message(revoke_message("y"), None)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)
    assert heard == [["y"]]  # the next revoke is still handled


def test_a_revoke_kept_for_later_is_not_marked_seen() -> None:
    """When the store was down the fan-out keeps it; the catch-up may try it again too."""
    calls: list[list[str]] = []

    def kept(ids: list[str]) -> bool:
        calls.append(ids)
        return False

    thread = _ListenerThread(Celery("catch-up", set_as_current=False), "node", kept)
    task_id = f"kept-{uuid.uuid4().hex}"
    thread._on_message(revoke_message(task_id), None)
    state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert calls == [[task_id], [task_id]]
    finally:
        state.revoked.discard(task_id)
