from __future__ import annotations

import pickle

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
)
from pictify_tasks.errors import error_from_response, parse_retry_after


def _error(status: int, body: bytes = b"", **headers: str) -> PictifyError:
    return error_from_response(status, body, CaseInsensitiveDict(headers), what="cancel of b_1")


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
    error = _error(status)
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


def test_errors_survive_pickling_and_rebuilding_from_args() -> None:
    error = _error(503, b'{"detail": "down"}')
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ServerError and str(copy) == str(error)
    rebuilt = ServerError(*error.args)
    assert str(rebuilt) == str(error)
