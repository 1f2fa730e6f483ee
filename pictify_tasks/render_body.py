"""The batch-render request body: one set of rules, used by the client and the emulator.

The client checks the body it is about to send and the emulator checks the
body it received with the same function, so the two can never disagree on
what is valid. Stdlib only: the emulator imports it without the rest of the
package. Plan limits (items per batch) are the API's business, not a rule
of the body's shape, so they are not checked here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FORMATS", "PYTHON_NAMES", "FieldError", "build_render_body", "render_body_errors"]

FORMATS = ("png", "jpeg", "webp")
_MAX_DEPTH = 32


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, in the shape of a problem-details ``errors`` item."""

    field: str
    message: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}

    def __str__(self) -> str:
        return self.message


def build_render_body(
    variable_sets: Any,
    *,
    format: Any = None,
    quality: Any = None,
    concurrency: Any = None,
    layout: Any = None,
    layouts: Any = None,
    webhook_url: Any = None,
) -> dict[str, Any]:
    """The JSON body for these arguments, unchecked (see :func:`render_body_errors`).

    A sequence of variable sets is copied into a list of dicts where it can be;
    anything else is passed through so that the check names it.
    """
    sets: Any = variable_sets
    if isinstance(variable_sets, Sequence) and not isinstance(variable_sets, (str, bytes)):
        sets = [dict(item) if isinstance(item, Mapping) else item for item in variable_sets]
    body: dict[str, Any] = {"variableSets": sets}
    for name, value in (
        ("format", format),
        ("quality", quality),
        ("concurrency", concurrency),
        ("layout", layout),
        ("layouts", layouts),
        ("webhookUrl", webhook_url),
    ):
        if value is not None:
            body[name] = value
    return body


#: The API's field names as the client's callers know them (its keyword arguments).
PYTHON_NAMES: Mapping[str, str] = {"variableSets": "variable_sets", "webhookUrl": "webhook_url"}


def render_body_errors(body: Any, *, names: Mapping[str, str] | None = None) -> list[FieldError]:
    """Every problem with a batch-render body (empty when it is valid).

    ``names`` renames fields in the messages (the client passes
    :data:`PYTHON_NAMES`, so a caller reads ``variable_sets[0]``); the
    ``field`` of each error stays the API's name.
    """
    errors = _body_errors(body)
    if not names:
        return errors
    return [_renamed(error, names) for error in errors]


def _renamed(error: FieldError, names: Mapping[str, str]) -> FieldError:
    message = error.message
    for api_name, shown in names.items():
        message = message.replace(api_name, shown)
    return FieldError(error.field, message, error.code)


def _body_errors(body: Any) -> list[FieldError]:
    if not isinstance(body, Mapping):
        return [FieldError("body", "the request body must be a JSON object", "invalid_type")]
    errors = _variable_set_errors(body.get("variableSets"))
    image_format = body.get("format")
    if image_format is not None and image_format not in FORMATS:
        errors.append(
            FieldError("format", f"format must be one of {', '.join(FORMATS)}", "invalid_enum")
        )
    quality = body.get("quality")
    if quality is not None and not (_is_number(quality) and 0.1 <= quality <= 1):
        errors.append(
            FieldError("quality", "quality must be a number from 0.1 to 1", "out_of_range")
        )
    concurrency = body.get("concurrency")
    if concurrency is not None and not (
        isinstance(concurrency, int)
        and not isinstance(concurrency, bool)
        and 1 <= concurrency <= 10
    ):
        errors.append(
            FieldError(
                "concurrency", "concurrency must be a whole number from 1 to 10", "out_of_range"
            )
        )
    layout = body.get("layout")
    if layout is not None and not isinstance(layout, (str, Mapping)):
        errors.append(FieldError("layout", "layout must be a string or an object", "invalid_type"))
    layouts = body.get("layouts")
    if layouts is not None and not isinstance(layouts, list):
        errors.append(FieldError("layouts", "layouts must be an array", "invalid_type"))
    for name in ("layout", "layouts"):
        problem = _json_problem(body.get(name), name, 0)
        if problem is not None:
            errors.append(problem)
    webhook = body.get("webhookUrl")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        errors.append(FieldError("webhookUrl", "webhookUrl must be an http(s) URL", "invalid_url"))
    return errors


def _variable_set_errors(sets: Any) -> list[FieldError]:
    if sets is None:
        return [FieldError("variableSets", "variableSets is required", "required")]
    if not isinstance(sets, list):
        return [
            FieldError("variableSets", "variableSets must be a list of objects", "invalid_type")
        ]
    if not sets:
        return [
            FieldError("variableSets", "variableSets must hold at least one object", "too_small")
        ]
    for index, item in enumerate(sets):
        where = f"variableSets[{index}]"
        if not isinstance(item, Mapping):
            return [
                FieldError(
                    where, f"{where} must be an object, not {type(item).__name__}", "invalid_type"
                )
            ]
        problem = _json_problem(item, where, 0)
        if problem is not None:
            return [problem]
    return []


def _json_problem(value: Any, where: str, depth: int) -> FieldError | None:
    """Why ``value`` cannot be sent as strict JSON (NaN, infinity, a set...), if it cannot."""
    if depth > _MAX_DEPTH:
        return FieldError(where, f"{where} nests deeper than {_MAX_DEPTH} levels", "too_deep")
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return FieldError(where, f"{where} is {value!r}, not a finite number", "invalid_number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return FieldError(
                    where, f"{where} has a key that is not a string: {key!r}", "invalid_key"
                )
            problem = _json_problem(item, f"{where}.{key}", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{index}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return FieldError(
        where, f"{where} is a {type(value).__name__}, which cannot be sent as JSON", "invalid_type"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
