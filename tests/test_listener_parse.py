"""``parse_control_message`` on every control message shape Celery broadcasts.

The shapes are those of Celery 5.3.6 and 5.7.0 (identical): ``app.control.revoke``
and ``revoke_by_stamped_headers`` from Python, and the ``celery control`` CLI.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from typing import Any

import pytest
from celery import Celery
from kombu import Consumer, Queue

from pictify_tasks.revoke.links import stamp_link_id, stamp_link_ids
from pictify_tasks.revoke.listener import RevokeNotice, parse_control_message


def _python_revoke(task_id: Any, **arguments: Any) -> dict[str, Any]:
    """What ``app.control.revoke(task_id, ...)`` broadcasts."""
    return {
        "method": "revoke",
        "arguments": {"task_id": task_id, "terminate": False, "signal": "SIGTERM", **arguments},
        "destination": None,
        "pattern": None,
        "matcher": None,
    }


def _parsed(body: Any) -> RevokeNotice:
    notice = parse_control_message(body)
    assert notice is not None, body
    return notice


# -- revoke ------------------------------------------------------------------------------


def test_revoke_of_one_id() -> None:
    notice = _parsed(_python_revoke("x"))
    assert notice == RevokeNotice(task_ids=("x",))
    assert notice.link_ids() == ["x"]


def test_revoke_of_a_list_of_ids_keeps_their_order() -> None:
    notice = _parsed(_python_revoke(["c", "a", "b"]))
    assert notice.task_ids == ("c", "a", "b")
    assert notice.stamped_headers == ()
    assert notice.link_ids() == ["c", "a", "b"]


def test_revoke_with_terminate() -> None:
    notice = _parsed(_python_revoke(["x"], terminate=True, signal="SIGKILL"))
    assert notice == RevokeNotice(task_ids=("x",))  # the same batches as a plain revoke


def test_revoke_addressed_to_another_worker_is_still_parsed() -> None:
    body = _python_revoke("x")
    body["destination"] = ["other@host"]
    assert _parsed(body).task_ids == ("x",)


def test_revoke_with_a_ticket_and_reply_to() -> None:
    body = _python_revoke(["x", "y"])
    body["ticket"] = "5b0c1a6e-0000-4000-8000-000000000000"
    body["reply_to"] = {"exchange": "reply.celery.pidbox", "routing_key": "abc"}
    notice = _parsed(body)
    assert notice.task_ids == ("x", "y")


def test_revoke_from_the_cli_has_no_terminate_key() -> None:
    notice = _parsed({"method": "revoke", "arguments": {"task_id": ["a", "b"]}})
    assert notice == RevokeNotice(task_ids=("a", "b"))


def test_terminate_from_the_cli_is_a_terminating_revoke() -> None:
    notice = _parsed({"method": "terminate", "arguments": {"signal": "KILL", "task_id": ["a"]}})
    assert notice == RevokeNotice(task_ids=("a",))


def test_terminate_with_one_id_as_a_string() -> None:
    notice = _parsed({"method": "terminate", "arguments": {"signal": "TERM", "task_id": "a"}})
    assert notice.task_ids == ("a",)


def test_revoke_drops_ids_that_are_not_strings_or_are_empty() -> None:
    notice = _parsed(_python_revoke(["a", 5, None, "", ["b"], "c"]))
    assert notice.task_ids == ("a", "c")


def test_revoke_with_a_tuple_of_ids() -> None:
    assert _parsed(_python_revoke(("a", "b"))).task_ids == ("a", "b")


# -- revoke_by_stamped_headers -------------------------------------------------------------


def _stamped(headers: Any, **arguments: Any) -> dict[str, Any]:
    """What ``app.control.revoke_by_stamped_headers(headers, ...)`` broadcasts."""
    return {
        "method": "revoke_by_stamped_headers",
        "arguments": {"headers": headers, "terminate": False, "signal": "SIGTERM", **arguments},
        "destination": None,
        "pattern": None,
        "matcher": None,
    }


def test_revoke_by_stamped_headers_with_one_value() -> None:
    notice = _parsed(_stamped({"k": "v"}))
    assert notice.task_ids == ()
    assert notice.stamped_headers == (("k", "v"),)
    assert notice.link_ids() == [stamp_link_id("k", "v")]


def test_revoke_by_stamped_headers_with_a_list_of_values() -> None:
    notice = _parsed(_stamped({"k": ["v1", "v2"]}))
    assert notice.stamped_headers == (("k", "v1"), ("k", "v2"))
    assert notice.link_ids() == [stamp_link_id("k", "v1"), stamp_link_id("k", "v2")]


def test_revoke_by_stamped_headers_with_several_headers() -> None:
    notice = _parsed(_stamped({"k": "v", "k2": ["a", "b"]}))
    assert set(notice.stamped_headers) == {("k", "v"), ("k2", "a"), ("k2", "b")}
    assert set(notice.link_ids()) == {
        stamp_link_id("k", "v"),
        stamp_link_id("k2", "a"),
        stamp_link_id("k2", "b"),
    }


def test_revoke_by_stamped_headers_with_terminate() -> None:
    assert _parsed(_stamped({"k": "v"}, terminate=True)).stamped_headers == (("k", "v"),)


def test_revoke_by_stamped_headers_from_the_cli() -> None:
    body = {"method": "revoke_by_stamped_headers", "arguments": {"headers": ["k=v", "k2=v2"]}}
    notice = _parsed(body)
    assert notice.stamped_headers == (("k", "v"), ("k2", "v2"))
    assert notice.link_ids() == [stamp_link_id("k", "v"), stamp_link_id("k2", "v2")]


def test_cli_stamped_headers_split_on_the_first_equals_sign_and_skip_garbage() -> None:
    body = {
        "method": "revoke_by_stamped_headers",
        "arguments": {"headers": ["k=a=b", "no-equals", 7, None, "k2="]},
    }
    assert _parsed(body).stamped_headers == (("k", "a=b"), ("k2", ""))


def test_stamp_link_ids_match_what_a_task_with_that_stamp_is_linked_under() -> None:
    notice = _parsed(_stamped({"mystamp": ["S1", "S2"]}))
    assert notice.link_ids() == stamp_link_ids({"mystamp": ["S1", "S2"]})
    assert set(notice.link_ids()) >= set(stamp_link_ids({"mystamp": "S1"}))


def test_revoke_by_stamped_headers_without_usable_headers_names_nothing() -> None:
    # A revoke that names nothing: None, or a notice with no ids; never an error.
    for headers in (None, 5, "k=v", [], {}):
        body = {"method": "revoke_by_stamped_headers", "arguments": {"headers": headers}}
        notice = parse_control_message(body)
        assert notice is None or notice.link_ids() == [], headers


# -- everything else -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"method": "ping", "arguments": {}, "destination": None, "pattern": None, "matcher": None},
        {"method": "enable_events", "arguments": {}},
        {"method": "shutdown", "arguments": {"msg": "bye"}},
        {"method": "pool_restart", "arguments": {"modules": None, "reload": False}},
        {"method": "Revoke", "arguments": {"task_id": "x"}},
        {"method": None, "arguments": {"task_id": "x"}},
        {"arguments": {"task_id": "x"}},
        {},
    ],
    ids=lambda body: repr(body.get("method", "<none>")),
)
def test_other_commands_are_none(body: dict[str, Any]) -> None:
    assert parse_control_message(body) is None


@pytest.mark.parametrize(
    "body",
    [None, "revoke", b"revoke", 7, ["revoke", {"task_id": "x"}], ("revoke",), object()],
    ids=lambda body: type(body).__name__,
)
def test_bodies_that_are_not_mappings_are_none(body: Any) -> None:
    assert parse_control_message(body) is None


@pytest.mark.parametrize(
    "arguments",
    [None, "task_id=x", ["x"], 5, {}, {"task_id": None}, {"task_id": 5}, {"task_id": {"x": 1}}],
    ids=repr,
)
@pytest.mark.parametrize("method", ["revoke", "terminate"])
def test_revoke_with_missing_or_garbage_arguments_is_none(method: str, arguments: Any) -> None:
    assert parse_control_message({"method": method, "arguments": arguments}) is None


def test_revoke_with_garbage_arguments_in_a_stamped_revoke_is_none() -> None:
    body = {"method": "revoke_by_stamped_headers", "arguments": "headers"}
    assert parse_control_message(body) is None


@pytest.mark.parametrize("method", [["revoke"], {"revoke": 1}], ids=["list", "dict"])
def test_an_unhashable_method_is_none_not_an_error(method: Any) -> None:
    assert parse_control_message({"method": method, "arguments": {"task_id": "x"}}) is None


def test_what_celery_itself_broadcasts_parses() -> None:
    """The bodies ``app.control`` of the installed Celery puts on the control exchange."""
    app = Celery("parse-probe", broker="memory://", set_as_current=False)
    bodies: list[Any] = []
    try:
        with app.connection_for_read() as connection:
            mailbox = app.control.mailbox(connection)
            queue = Queue(
                f"pictify-parse-probe-{uuid.uuid4().hex[:8]}",
                exchange=mailbox.exchange,
                durable=False,
                auto_delete=True,
            )
            consumer = Consumer(
                connection.channel(),
                [queue],
                no_ack=True,
                accept=mailbox.accept,
                callbacks=[lambda body, message: bodies.append(body)],
            )
            with consumer:
                app.control.revoke(["a", "b"], terminate=True, signal="SIGKILL")
                app.control.revoke_by_stamped_headers({"k": ["v1", "v2"]})
                app.control.terminate("c")
                app.control.broadcast("ping")
                deadline = time.monotonic() + 5.0
                while len(bodies) < 4 and time.monotonic() < deadline:
                    with contextlib.suppress(socket.timeout):
                        connection.drain_events(timeout=0.1)
    finally:
        app.close()
    assert len(bodies) == 4, bodies
    revoke, stamped, terminate, ping = (parse_control_message(body) for body in bodies)
    assert revoke == RevokeNotice(task_ids=("a", "b"))
    assert stamped == RevokeNotice(stamped_headers=(("k", "v1"), ("k", "v2")))
    assert terminate == RevokeNotice(task_ids=("c",))
    assert ping is None
