"""One HTTP call, bounded as a whole and in size: the client's only way to the wire.

``requests``' ``timeout`` bounds each socket operation, not the call: an
answer trickled a byte at a time never times out. So every call gets a
watchdog (:mod:`pictify_tasks.watchdog`) that shuts the call's socket at the
deadline, wherever the call is (sending, waiting for the head, reading the
body); the blocked read then fails at once. The pools of
:class:`DeadlineAdapter` tell the watchdog which connection the call holds,
and forget it when the connection goes back to the pool, so the watchdog
never touches a connection another call may use.

The body is streamed and reading stops past ``max_body`` bytes. Normal calls
read their body to the end, so their connection is reused (keep-alive).

A client's own session (:func:`new_session`, no proxy for its host) is sent
through its urllib3 pool directly (:class:`DirectRoute`): ``requests``
prepares, merges and hooks every call, which costs more CPU than the rest of
a cancel. A session a user passes in goes through ``requests`` as it is.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import requests
import urllib3.exceptions
import urllib3.poolmanager
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, select_proxy
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pictify_tasks.watchdog import Watch, current_watch, watched

__all__ = [
    "MAX_BODY",
    "Answer",
    "BodyTooLarge",
    "CallTimedOut",
    "DeadlineAdapter",
    "DirectRoute",
    "Timeout",
    "call_seconds",
    "new_session",
    "send",
]

#: The most bytes of an answer's body that are read (1 MiB).
MAX_BODY = 1024 * 1024
#: ``requests``' timeout: seconds, or (connect, read) seconds.
Timeout = Union[float, tuple[float, float]]
_CHUNK = 64 * 1024


class CallTimedOut(Exception):
    """The whole call took longer than its time budget; the outcome is unknown."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g}s")
        self.seconds = seconds


class BodyTooLarge(Exception):
    """The answer's body passed ``limit`` bytes; reading stopped there."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(f"HTTP {status} with a body over {limit} bytes")
        self.status = status
        self.limit = limit


@dataclass(frozen=True)
class Answer:
    """A complete answer: status, headers (case-insensitive) and the whole body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


def call_seconds(timeout: Timeout) -> float:
    """The time budget of a whole call: the timeout, or connect plus read."""
    if isinstance(timeout, tuple):
        return float(sum(timeout))
    return float(timeout)


def new_session(base_url: str | None = None) -> requests.Session:
    """A session whose calls the watchdog can end (see :class:`DeadlineAdapter`).

    With ``base_url`` (every request goes to that one host), the environment's
    proxies (``HTTPS_PROXY``, ``NO_PROXY``...) and CA bundle
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) are read once, here: with
    ``trust_env`` ``requests`` reads them again on every call, scanning the
    whole environment (measured: a third of a cancel's CPU in a worker), and
    may replace the ``Authorization`` header with a ``~/.netrc`` entry.
    """
    session = requests.Session()
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if base_url is not None:
        session.proxies.update(requests.utils.get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
        session.trust_env = False
    return session


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Mapping[str, Any] | None,
    timeout: Timeout,
    max_body: int = MAX_BODY,
    route: DirectRoute | None = None,
) -> Answer:
    """Send one request and read its whole answer within ``call_seconds(timeout)``.

    Through ``route`` when given (the session's own pool), else through
    ``session``. Raises :class:`CallTimedOut`, :class:`BodyTooLarge` or a
    ``requests.RequestException`` (the direct route's urllib3 errors are
    raised as the ones ``requests`` would raise). With a session of another
    adapter the deadline is still checked between reads, but a slow read is
    not cut.
    """
    call = _Call(method, url, headers, json_body, timeout, max_body)
    budget = call_seconds(timeout)
    with watched(budget) as watch:
        try:
            if route is not None:
                answer = route.send(call, watch)
            else:
                answer = _send_via_requests(session, call, watch)
        except requests.RequestException:
            if watch.fired:
                raise CallTimedOut(budget) from None
            raise
        if watch.fired:
            # Cut off mid-head, http.client may still hand over a response: a
            # status line, some headers, no body. Nothing read after the
            # deadline is trusted.
            raise CallTimedOut(budget)
    return answer


@dataclass(frozen=True)
class _Call:
    """One call's request and bounds, as :func:`send` was given them."""

    method: str
    url: str
    headers: Mapping[str, str]
    json_body: Mapping[str, Any] | None
    timeout: Timeout
    max_body: int


def _send_via_requests(session: requests.Session, call: _Call, watch: Watch) -> Answer:
    response = session.request(
        call.method,
        call.url,
        headers=dict(call.headers),
        json=call.json_body,
        timeout=call.timeout,
        allow_redirects=False,
        stream=True,
    )
    try:
        content = _read_body(
            response.iter_content(_CHUNK), response.status_code, call.max_body, watch
        )
    finally:
        response.close()
    return Answer(response.status_code, response.reason or "", response.headers, content)


def _read_body(chunks: Iterable[bytes], status: int, max_body: int, watch: Watch) -> bytes:
    read: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_body:
            raise BodyTooLarge(status, max_body)
        if time.monotonic() > watch.deadline:
            raise CallTimedOut(watch.budget)
        read.append(chunk)
    return b"".join(read)


class DirectRoute:
    """Calls to one origin straight through a session's own urllib3 pool.

    The same request ``requests`` would send (the session's headers, a JSON
    body, no redirects, no retries, the same pool and TLS settings), without
    its per-call work: preparing the request, merging settings, cookies and
    hooks (about 0.6 ms of CPU per call, ``benchmarks/http_call_cost.py``:
    more than the rest of a cancel). Only for a session :func:`new_session` made: its adapter is a
    :class:`DeadlineAdapter`, it reads no environment per call and no proxy
    applies to the origin (a proxied call goes through ``requests``).
    """

    def __init__(
        self, session: requests.Session, pool: HTTPConnectionPool, base_url: str, base_path: str
    ) -> None:
        self._session = session
        self.pool = pool
        self._base_url = base_url
        self._base_path = base_path

    @classmethod
    def of(cls, session: requests.Session, base_url: str) -> DirectRoute | None:
        """The route for calls to ``base_url`` through ``session``, or ``None`` if it has none."""
        base_url = base_url.rstrip("/")
        try:
            parts = urllib3.util.parse_url(base_url)
            adapter = session.get_adapter(base_url)
        except (ValueError, requests.RequestException):  # ``requests`` will say what is wrong
            return None
        if (
            session.trust_env
            or session.cert is not None
            or type(adapter) is not DeadlineAdapter
            or select_proxy(base_url, session.proxies) is not None
            or parts.scheme not in ("http", "https")
            or not parts.host
            or parts.query is not None
            or parts.fragment is not None
        ):
            return None
        prepared = requests.Request("GET", base_url).prepare()
        with_tls = getattr(adapter, "get_connection_with_tls_context", None)
        if with_tls is not None:  # requests >= 2.32.2
            pool = with_tls(prepared, session.verify)
        else:
            pool = adapter.get_connection(base_url)
        if not isinstance(pool, _WatchedHTTPPool):
            return None
        # What ``requests`` does to the pool before each call: its TLS checks.
        adapter.cert_verify(pool, base_url, session.verify, None)  # type: ignore[no-untyped-call]
        return cls(session, pool, base_url, (parts.path or "").rstrip("/"))

    def send(self, call: _Call, watch: Watch) -> Answer:
        url = call.url
        if not url.startswith(self._base_url + "/"):
            raise requests.exceptions.InvalidURL(f"{url} is not under {self._base_url}")
        for header in call.headers.items():  # as ``requests`` does: no CR/LF smuggled in
            check_header_validity(header)
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict(self._session.headers)
        merged.update(call.headers)
        body = None
        if call.json_body is not None:
            try:
                body = json.dumps(call.json_body, allow_nan=False).encode("utf-8")
            except ValueError as exc:
                raise requests.exceptions.InvalidJSONError(exc) from None
            merged.setdefault("Content-Type", "application/json")
        response = None
        try:
            response = self.pool.urlopen(
                call.method,
                self._base_path + url[len(self._base_url) :],
                body=body,
                headers=dict(merged),
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=_urllib3_timeout(call.timeout),
                preload_content=False,
                decode_content=True,
            )
            content = _read_body(response.stream(_CHUNK), response.status, call.max_body, watch)
            return Answer(response.status, response.reason or "", response.headers, content)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _as_requests_error(exc) from None
        finally:
            if response is not None:
                # As ``requests`` does: a body not read to the end closes the
                # connection before it goes back to the pool, never reused half-read.
                if not response.closed:
                    response.close()
                response.release_conn()


def _urllib3_timeout(timeout: Timeout) -> urllib3.Timeout:
    if isinstance(timeout, tuple):
        connect, read = timeout
        return urllib3.Timeout(connect=connect, read=read)
    return urllib3.Timeout(connect=timeout, read=timeout)


def _as_requests_error(exc: BaseException) -> requests.RequestException:
    """The exception ``requests`` raises for urllib3's ``exc``, so callers handle one kind."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    text = str(exc)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return requests.ConnectionError(text)
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        return requests.ConnectTimeout(text)
    if isinstance(reason, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
        return requests.ReadTimeout(text)
    if isinstance(reason, urllib3.exceptions.SSLError):
        return requests.exceptions.SSLError(text)
    if isinstance(reason, urllib3.exceptions.DecodeError):
        return requests.exceptions.ContentDecodingError(text)
    return requests.ConnectionError(text)


class _WatchedHTTPPool(HTTPConnectionPool):
    """A pool that tells the calling thread's watch which connection it lends out."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        watch = current_watch()
        if watch is not None:
            watch.attach(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        watch = current_watch()
        if watch is not None and conn is not None:
            watch.detach(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(_WatchedHTTPPool, HTTPSConnectionPool):
    """The same for HTTPS (``HTTPSConnectionPool`` makes the connections)."""


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose pools let the watchdog end a call that runs past its budget.

    Only the stock pools are replaced; a SOCKS proxy keeps its own (there the
    deadline is checked between reads only).
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


def _watch_pools(manager: Any) -> None:
    if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
