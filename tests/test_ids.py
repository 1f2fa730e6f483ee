from __future__ import annotations

import pytest

from pictify_tasks import InvalidBatchIdError
from pictify_tasks.ids import idempotency_key_for, path_segment, validate_id


@pytest.mark.parametrize("value", ["b_1", "batch-2024.01:x", "A" * 128, "..x", "._-:"])
def test_accepts_ids_of_the_allowed_characters(value: str) -> None:
    assert validate_id(value) == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        (".", "must not be"),
        ("..", "must not be"),
        ("A" * 129, "129 characters"),
        ("a/b", "may only contain"),
        ("a b", "may only contain"),
        ("a%2F", "may only contain"),
        ("é", "may only contain"),
        ("a\n", "may only contain"),
        (None, "must be a str"),
        (42, "must be a str"),
        (b"bytes", "must be a str"),
    ],
)
def test_rejects_anything_else_with_a_clear_message(value: object, says: str) -> None:
    with pytest.raises(InvalidBatchIdError, match=says) as caught:
        validate_id(value)
    assert isinstance(caught.value, ValueError)


def test_path_segment_percent_encodes_what_a_url_would_misread() -> None:
    assert path_segment("a:b.c") == "a%3Ab.c"


def test_idempotency_key_is_stable_per_operation_and_id() -> None:
    key = idempotency_key_for("cancel", "b_1")
    assert key == idempotency_key_for("cancel", "b_1")
    assert key != idempotency_key_for("cancel", "b_2")
    assert key != idempotency_key_for("start", "b_1")
    assert key.startswith("pictify-tasks-cancel-") and len(key) < 80
