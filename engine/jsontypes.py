"""Whether a decoded JSON value is of a dataclass field's annotated type (``float``, ``dict[str, float]``,
``int | None``...): every reader refuses a line whose fields are not what the writer declared, in one
place, instead of failing far from it (a comparison in a chart, an export)."""

from __future__ import annotations

import types
from dataclasses import fields
from typing import Any, Callable, get_args, get_origin, get_type_hints

_FIELD_CHECKS: dict[type, tuple[tuple[str, Any, Callable[[Any], bool]], ...]] = {}


def field_checks(cls: type) -> tuple[tuple[str, Any, Callable[[Any], bool]], ...]:
    """Each field's name, annotated type and a test of whether a decoded JSON value is of that type."""
    checks = _FIELD_CHECKS.get(cls)
    if checks is None:
        hints, names = get_type_hints(cls), [field.name for field in fields(cls)]
        checks = _FIELD_CHECKS[cls] = tuple((name, hints[name], _check(hints[name])) for name in names)
    return checks


def _check(kind: Any) -> Callable[[Any], bool]:
    """A test for JSON values of the annotated type ``kind``. A float field takes an integer (other
    writers spell 1.0 as 1); a bool is no number, though Python counts it as one. Exact type tests:
    a replay runs them on every field of every event."""
    if kind is float:
        return lambda value: type(value) is float or type(value) is int
    if kind in (int, bool, str, dict, list):
        return lambda value: type(value) is kind
    if kind is type(None):
        return lambda value: value is None
    origin, arguments = get_origin(kind), get_args(kind)
    if origin is types.UnionType:
        either = [_check(argument) for argument in arguments]
        return lambda value: any(check(value) for check in either)
    if origin is dict:
        key, item = (_check(argument) for argument in arguments)
        return lambda value: type(value) is dict and all(key(k) and item(v) for k, v in value.items())
    if origin is list:
        (item,) = (_check(argument) for argument in arguments)
        return lambda value: type(value) is list and all(item(v) for v in value)
    raise TypeError(f"no JSON check for fields of type {kind}")
