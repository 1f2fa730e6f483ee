"""The listener's catch-up: revokes it missed are taken from the worker's own state."""

from __future__ import annotations

import uuid

from celery import Celery
from celery.worker import state

from pictify_tasks.listener import RevokeNotice, _ListenerThread


def test_catch_up_handles_the_workers_revoked_ids_once() -> None:
    missed = [f"missed-{uuid.uuid4().hex}" for _ in range(3)]
    heard: list[RevokeNotice] = []
    thread = _ListenerThread(Celery("catch-up", set_as_current=False), "node", heard.append)
    for task_id in missed:
        state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert len(heard) == 1 and set(missed) <= set(heard[0].task_ids)
        thread._catch_up()  # nothing new: nothing handled twice
        assert len(heard) == 1
    finally:
        for task_id in missed:
            state.revoked.discard(task_id)


def test_ids_heard_on_the_wire_are_not_handled_again_by_catch_up() -> None:
    heard: list[RevokeNotice] = []
    thread = _ListenerThread(Celery("catch-up", set_as_current=False), "node", heard.append)
    task_id = f"heard-{uuid.uuid4().hex}"
    thread._on_message({"method": "revoke", "arguments": {"task_id": task_id}}, None)
    state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert [n.task_ids for n in heard] == [(task_id,)]
    finally:
        state.revoked.discard(task_id)


def test_a_failing_handler_or_a_junk_message_never_escapes() -> None:
    def explode(notice: RevokeNotice) -> None:
        raise RuntimeError("store down")

    thread = _ListenerThread(Celery("catch-up", set_as_current=False), "node", explode)
    thread._on_message({"method": "revoke", "arguments": {"task_id": "x"}}, None)
    thread._on_message(object(), None)
