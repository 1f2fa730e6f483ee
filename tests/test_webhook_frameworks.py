"""The receiver mounted as a Django view, a Flask view and an ASGI app: the same answers."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import pictify_tasks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.webhooks import sign
from pictify_tasks.webhooks.receiver import MAX_BODY

SECRET = "whsec_0123456789abcdef"
PATH = "/pictify/webhook"


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    """An app as a web process has it: a broker (in memory here), the state, the secret."""
    app = Celery(f"web-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(
        broker_url="memory://", pictify_state_url="memory://", pictify_webhook_secret=SECRET
    )
    pictify_tasks.install(app)
    yield app
    pictify_tasks.uninstall(app)


def delivery(batch_id: str = "b1") -> tuple[bytes, dict[str, str]]:
    data = {"batchId": batch_id, "status": "completed", "totalCount": 1, "completedCount": 1}
    body = json.dumps({"event": "batch.completed", "data": data}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Pictify-Event": "batch.completed",
        "X-Pictify-Delivery-Id": f"dlv-{batch_id}",
        "X-Pictify-Signature": sign(body, SECRET, int(time.time())),
    }
    return body, headers


def heard(app: Celery, batch_id: str = "b1") -> bool:
    return runtime_for(app).store.wait_turn(batch_id, "probe", 60).end is not None


def test_the_adapters_import_without_their_frameworks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("django", "flask"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    for name in ("django", "flask", "asgi"):
        monkeypatch.delitem(sys.modules, f"pictify_tasks.webhooks.{name}", raising=False)
        assert importlib.import_module(f"pictify_tasks.webhooks.{name}").__name__


def test_the_django_view(celery_app: Celery) -> None:
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.test import RequestFactory

    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["testserver"], SECRET_KEY="tests", USE_TZ=True)
        django.setup()
    from pictify_tasks.webhooks.django import webhook_view

    view = webhook_view(celery_app)
    assert getattr(view, "csrf_exempt", False)  # Pictify signs instead
    body, headers = delivery()
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    request = RequestFactory().post(PATH, data=body, content_type="application/json", **meta)
    response = view(request)
    assert (response.status_code, json.loads(response.content)) == (202, {"accepted": True})
    assert heard(celery_app)
    forged = RequestFactory().post(PATH, data=body, content_type="application/json")
    assert view(forged).status_code == 401
    # A middleware that read the body first leaves it readable for the view.
    body, headers = delivery("b2")
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    read_before = RequestFactory().post(PATH, data=body, content_type="application/json", **meta)
    assert read_before.body == body
    assert view(read_before).status_code == 202 and heard(celery_app, "b2")


def test_the_django_view_reads_no_more_than_a_delivery_can_be(celery_app: Celery) -> None:
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIRequest
    from django.test import RequestFactory

    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["testserver"], SECRET_KEY="tests", USE_TZ=True)
        django.setup()
    from pictify_tasks.webhooks.django import webhook_view

    huge = EndlessBody(2 * 1024 * 1024)  # under Django's own limit (2.5 MB by default)
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in delivery()[1].items()}
    environ = RequestFactory()._base_environ(
        PATH_INFO=PATH, REQUEST_METHOD="POST", CONTENT_LENGTH=str(huge.size), **meta
    )
    environ["wsgi.input"] = huge
    response = webhook_view(celery_app)(WSGIRequest(environ))
    assert response.status_code == 413
    assert huge.read_bytes <= 2 * MAX_BODY
    assert not heard(celery_app)


def test_the_flask_view(celery_app: Celery) -> None:
    flask = pytest.importorskip("flask")
    from pictify_tasks.webhooks.flask import webhook_view

    web = flask.Flask(__name__)
    web.add_url_rule(PATH, view_func=webhook_view(celery_app), methods=["POST"])
    client = web.test_client()
    body, headers = delivery()
    response = client.post(PATH, data=body, headers=headers)
    assert (response.status_code, response.get_json()) == (202, {"accepted": True})
    assert heard(celery_app)
    assert client.post(PATH, data=body, headers=headers).get_json() == {"duplicate": True}


class EndlessBody(io.RawIOBase):
    """A request body of ``size`` bytes that counts how many of them were read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


@pytest.mark.parametrize("length", [True, False], ids=["Content-Length", "chunked"])
def test_the_flask_view_reads_no_more_than_a_delivery_can_be(
    celery_app: Celery, length: bool
) -> None:
    flask = pytest.importorskip("flask")
    import werkzeug.test

    from pictify_tasks.webhooks.flask import webhook_view

    web = flask.Flask(__name__)
    web.add_url_rule(PATH, view_func=webhook_view(celery_app), methods=["POST"])
    huge = EndlessBody(50 * 1024 * 1024)
    environ = werkzeug.test.EnvironBuilder(PATH, method="POST", headers=delivery()[1]).get_environ()
    environ["wsgi.input"] = huge
    if length:
        environ["CONTENT_LENGTH"] = str(huge.size)
    else:  # chunked: the server ends the stream, no length is given
        environ["wsgi.input_terminated"] = True
        environ.pop("CONTENT_LENGTH", None)
    statuses: list[str] = []
    b"".join(web.wsgi_app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["413 REQUEST ENTITY TOO LARGE"]
    assert huge.read_bytes <= 2 * MAX_BODY
    assert not heard(celery_app)


def asgi_call(app: Any, method: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request through an ASGI app, its body in two pieces as a server may send it."""
    pieces = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": PATH,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> dict[str, Any]:
        return pieces.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_the_asgi_app(celery_app: Celery) -> None:
    from pictify_tasks.webhooks.asgi import asgi_app

    app = asgi_app(celery_app)
    body, headers = delivery()
    assert asgi_call(app, "POST", body, headers) == (202, b'{"accepted": true}')
    assert heard(celery_app)
    stale = {**headers, "X-Pictify-Signature": sign(body, SECRET, int(time.time()) - 600)}
    assert asgi_call(app, "POST", body, stale)[0] == 401
    assert asgi_call(app, "GET", b"", {})[0] == 405


def test_the_asgi_app_refuses_a_body_over_the_limit(celery_app: Celery) -> None:
    from pictify_tasks.webhooks.asgi import asgi_app

    body, headers = delivery()
    huge = body + b" " * MAX_BODY  # signed or not, too large to be a delivery
    assert asgi_call(asgi_app(celery_app), "POST", huge, headers)[0] == 413
    assert not heard(celery_app)
