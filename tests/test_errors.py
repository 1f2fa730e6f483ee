from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import pytest
from requests.structures import CaseInsensitiveDict

from pictify_tasks import (
    AuthenticationError,
    BatchConflictError,
    BatchNotFoundError,
    InvalidRequestError,
    PictifyError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from pictify_tasks.errors import error_from_response, json_object
from pictify_tasks.ratelimit import parse_retry_after, rate_limit_from

#: A body the API itself could have sent (a JSON object), for statuses that need one.
API_BODY = b'{"title": "Not Found", "detail": "no such batch"}'


def _error(status: int, content: bytes = b"", **headers: str) -> PictifyError:
    """The error for an answer, read as the client reads it: the body and headers once."""
    found = CaseInsensitiveDict(headers)
    return error_from_response(
        status,
        json_object(content),
        rate_limit_from(status, found),
        content=content,
        content_type=found.get("Content-Type", ""),
        what="cancel of b_1",
    )


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, InvalidRequestError, False),
        (422, InvalidRequestError, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (402, QuotaExceededError, False),
        (404, BatchNotFoundError, False),
        (409, BatchConflictError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
    ],
)
def test_status_maps_to_an_error_that_says_whether_to_retry(
    status: int, kind: type, retryable: bool
) -> None:
    error = _error(status, API_BODY)
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status == status
    assert f"HTTP {status}" in str(error)


def test_problem_details_give_title_detail_and_field_errors() -> None:
    body = (
        b'{"type":"about:blank","title":"Validation failed","status":422,'
        b'"detail":"bad input","errors":[{"field":"variableSets","message":"too many",'
        b'"code":"max"}]}'
    )
    error = _error(422, body, **{"Content-Type": "application/problem+json"})
    assert "Validation failed: bad input" in str(error)
    assert "variableSets: too many" in str(error)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"message": "Batch not found"}', "Batch not found"),
        (b'{"error": "Not found", "code": "batch_not_found"}', "Not found"),
        (b'{"error": {"message": "nested", "code": "x"}}', "nested"),
    ],
)
def test_older_body_shapes_are_read(body: bytes, text: str) -> None:
    assert text in str(_error(404, body))


def test_html_and_empty_bodies_still_give_a_clear_error() -> None:
    html = _error(
        502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", **{"Content-Type": "text/html"}
    )
    assert "HTML body" in str(html) and "502 Bad Gateway" in str(html)
    assert "empty body" in str(_error(503))


def test_quota_exceeded_429_is_not_a_rate_limit_and_never_retried() -> None:
    error = _error(429, b'{"title":"Quota","code":"quota_exceeded"}', **{"Retry-After": "5"})
    assert isinstance(error, QuotaExceededError)
    assert not error.retryable


def test_rate_limit_reads_retry_after_from_header_then_body() -> None:
    assert _error(429, b"{}", **{"Retry-After": "7"}).retry_after == 7.0
    assert _error(429, b'{"retryAfter": 3}').retry_after == 3.0
    assert _error(429, b"{}").retry_after is None


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225600.0) == 10.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225700.0) == 0.0
    for junk in (None, "", "soon", "-1", "nan"):
        assert parse_retry_after(junk) is None


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker whose local time is 9 hours ahead of UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo")
def test_an_http_date_without_a_zone_is_utc_not_the_workers_local_time() -> None:
    for zoneless in ("Thu, 01 Jan 2026 00:00:10", "Thu, 01 Jan 2026 00:00:10 -0000"):
        assert parse_retry_after(zoneless, now=1767225600.0) == 10.0


@pytest.mark.usefixtures("tokyo")
@pytest.mark.parametrize(
    "date", ["Fri, 31 Dec 9999 23:59:59", "Mon, 01 Jan 0001 00:00:00 -2359", "Thu, 01 Jan 2026"]
)
def test_an_http_date_no_clock_can_hold_is_garbage_not_an_exception(date: str) -> None:
    wait = parse_retry_after(date, now=1767225600.0)
    assert wait is None or wait >= 0
    assert _error(503, b"{}", **{"Retry-After": date}).retryable


@pytest.mark.parametrize("status", [500, 502, 504, 400])
def test_retry_after_is_read_only_on_a_429_or_a_503(status: int) -> None:
    error = _error(status, b'{"retryAfter": 4}', **{"Retry-After": "7"})
    assert error.retry_after is None
    assert _error(503, b"{}", **{"Retry-After": "7"}).retry_after == 7.0


def test_errors_survive_pickling_and_rebuilding_from_args() -> None:
    error = _error(503, b'{"detail": "down"}')
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ServerError and str(copy) == str(error)
    rebuilt = ServerError(*error.args)
    assert str(rebuilt) == str(error)


@pytest.mark.parametrize(
    "junk",
    ["inf", "Infinity", "-inf", "1e400", "NaN", "-0.5", "1_000", " ", "0x10", "5 minutes"],
)
def test_retry_after_text_that_is_not_a_finite_wait_is_garbage(junk: str) -> None:
    assert parse_retry_after(junk) is None


@pytest.mark.parametrize(
    "junk",
    [float("inf"), float("-inf"), float("nan"), -1, True, False, 10**400, [], {}],
)
def test_retry_after_values_that_are_not_a_finite_wait_are_garbage(junk: object) -> None:
    assert parse_retry_after(junk) is None


def test_retry_after_numbers_are_read_as_they_are_without_a_cap() -> None:
    assert parse_retry_after(3) == 3.0
    assert parse_retry_after(0.25) == 0.25
    assert parse_retry_after(1e20) == 1e20  # finite: the retry policy caps it, not the parser
    assert parse_retry_after(" 12 ") == 12.0


@pytest.mark.parametrize(
    "body",
    [
        b'{"retryAfter": Infinity}',
        b'{"retryAfter": 1e400}',
        b'{"retryAfter": NaN}',
        b'{"retryAfter": "inf"}',
        b'{"retryAfter": -3}',
        b'{"retryAfter": true}',
    ],
)
def test_a_body_retry_after_that_is_not_a_finite_wait_is_ignored(body: bytes) -> None:
    error = _error(429, body, **{"Content-Type": "application/json"})
    assert isinstance(error, RateLimitError) and error.retry_after is None


def test_a_header_retry_after_of_infinity_is_ignored_and_the_body_read() -> None:
    error = _error(429, b'{"retryAfter": 4}', **{"Retry-After": "inf"})
    assert error.retry_after == 4.0


def test_a_429_without_retry_after_waits_until_the_rate_limit_reset() -> None:
    reset = int(time.time()) + 100
    waited = _error(429, b"{}", **{"X-RateLimit-Reset": str(reset)}).retry_after
    assert waited is not None and 97 <= waited <= 100
    past = _error(429, b"{}", **{"X-RateLimit-Reset": str(int(time.time()) - 50)})
    assert past.retry_after == 0.0
    for junk in ("soon", "inf", "nan", ""):
        assert _error(429, b"{}", **{"X-RateLimit-Reset": junk}).retry_after is None
    # The server's own Retry-After wins over the window's reset.
    both = _error(429, b"{}", **{"Retry-After": "2", "X-RateLimit-Reset": str(reset)})
    assert both.retry_after == 2.0


@pytest.mark.parametrize(
    ("body", "content_type", "shows"),
    [
        (b"<html><body><h1>404 Not Found</h1>nginx</body></html>", "text/html", "nginx"),
        (b"Not Found", "text/plain", "Not Found"),
        (b"", "", "empty body"),
        (b'["not", "an", "object"]', "application/json", "not"),
        (b"null", "application/json", "null"),
    ],
)
def test_a_404_that_is_not_the_apis_own_answer_is_unexpected_and_retryable(
    body: bytes, content_type: str, shows: str
) -> None:
    error = _error(404, body, **{"Content-Type": content_type})
    assert type(error) is UnexpectedResponseError
    assert error.retryable and error.status == 404
    text = str(error)
    assert "HTTP 404" in text and shows in text and "base URL" in text
    if content_type:
        assert content_type in text


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/problem+json", "text/plain", ""]
)
def test_a_404_with_a_json_object_is_the_api_saying_not_found(content_type: str) -> None:
    error = _error(404, API_BODY, **{"Content-Type": content_type})
    assert type(error) is BatchNotFoundError and not error.retryable


def test_the_api_text_in_an_error_is_cut_to_three_hundred_characters() -> None:
    error = _error(500, b'{"detail": "' + b"d" * 100_000 + b'"}')
    assert isinstance(error, ServerError)
    assert len(str(error)) < 400
    assert "d" * 250 in str(error) and "d" * 301 not in str(error)
    assert "\N{HORIZONTAL ELLIPSIS}" in str(error)
    html = _error(502, b"<p>" + b"x" * 100_000 + b"</p>", **{"Content-Type": "text/html"})
    assert len(str(html)) < 400
