"""Payload filters: a Qdrant-shaped JSON language, validated once, evaluated on columns.

Grammar::

    filter    = {"must": [cond, ...], "should": [cond, ...], "must_not": [cond, ...]}
    cond      = filter
              | {"key": "a.b", "match": {"value": v}}        # equals v
              | {"key": "a.b", "match": {"any": [v, ...]}}   # equals one of them
              | {"key": "a.b", "match": {"except": [v, ...]}} # present and none of them
              | {"key": "a.b", "range": {"gt"|"gte"|"lt"|"lte": number, ...}}
              | {"key": "a.b", "is_empty": true}             # absent, null or []
              | {"has_id": [id, ...]}

``must``: every condition holds; ``should``: at least one holds (when given); ``must_not``:
none holds. Keys are dotted paths into the payload. A list value matches when one of its
elements does. Values are strings, booleans or numbers (``1`` matches ``1.0``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from quiver.db.payloads import FieldColumn
from quiver.errors import InvalidFilterError

_CLAUSES = ("must", "should", "must_not")
_RANGE_OPS = ("gt", "gte", "lt", "lte")
MAX_FILTER_DEPTH = 8
#: Longest ``has_id`` or ``match.any`` / ``match.except`` list in a filter.
MAX_FILTER_VALUES = 100_000


@dataclass(frozen=True)
class Match:
    key: str
    values: tuple[Any, ...]
    negate: bool = False  # "except": present and not one of ``values``


@dataclass(frozen=True)
class Range:
    key: str
    bounds: tuple[tuple[str, int | float], ...]


@dataclass(frozen=True)
class IsEmpty:
    key: str


@dataclass(frozen=True)
class HasId:
    ids: tuple[Any, ...]


@dataclass(frozen=True)
class Filter:
    must: tuple[Any, ...] = ()
    should: tuple[Any, ...] = ()
    must_not: tuple[Any, ...] = ()


def parse_filter(obj: Any) -> Filter | None:
    """Validate a filter given as JSON-like dicts; ``None`` or ``{}`` means no filter."""
    if obj is None or (isinstance(obj, dict) and not obj):
        return None
    return _parse_filter(obj, "filter", 0)


def _parse_filter(obj: Any, where: str, depth: int) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidFilterError(f"{where}: filters nest at most {MAX_FILTER_DEPTH} levels deep")
    if not isinstance(obj, dict):
        raise InvalidFilterError(f"{where} must be an object, got {type(obj).__name__}")
    unknown = set(obj) - set(_CLAUSES)
    if unknown:
        raise InvalidFilterError(
            f"{where}: unknown clause(s) {sorted(unknown)}; expected any of {list(_CLAUSES)}"
        )
    clauses = {}
    for clause in _CLAUSES:
        conds = obj.get(clause, [])
        if isinstance(conds, dict):
            conds = [conds]
        if not isinstance(conds, list):
            raise InvalidFilterError(
                f"{where}.{clause} must be a list of conditions, got {type(conds).__name__}"
            )
        clauses[clause] = tuple(
            _parse_condition(c, f"{where}.{clause}[{i}]", depth) for i, c in enumerate(conds)
        )
    return Filter(**clauses)


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, str | bool | int | float) and value == value:  # not NaN
        return value
    raise InvalidFilterError(
        f"{where}: match values must be strings, booleans or numbers, got {value!r}"
    )


def _check_length(values: list[Any], where: str) -> None:
    if len(values) > MAX_FILTER_VALUES:
        raise InvalidFilterError(
            f"{where} holds at most {MAX_FILTER_VALUES} values, got {len(values)}"
        )


def _parse_condition(obj: Any, where: str, depth: int) -> Any:
    if not isinstance(obj, dict):
        raise InvalidFilterError(f"{where} must be an object, got {type(obj).__name__}")
    if set(obj) & set(_CLAUSES):
        return _parse_filter(obj, where, depth + 1)
    if "has_id" in obj:
        if set(obj) != {"has_id"} or not isinstance(obj["has_id"], list):
            raise InvalidFilterError(f"{where}: has_id takes a list of ids and nothing else")
        _check_length(obj["has_id"], f"{where}.has_id")
        return HasId(tuple(obj["has_id"]))
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidFilterError(
            f"{where}: expected a nested filter, {{'has_id': [...]}} or a 'key' with 'match', "
            f"'range' or 'is_empty'; got keys {sorted(obj)}"
        )
    kinds = set(obj) - {"key"}
    if len(kinds) != 1 or not kinds <= {"match", "range", "is_empty"}:
        raise InvalidFilterError(
            f"{where}: a key condition needs exactly one of 'match', 'range', 'is_empty'; "
            f"got {sorted(kinds)}"
        )
    if "is_empty" in obj:
        if obj["is_empty"] is not True:
            raise InvalidFilterError(f"{where}: is_empty must be true")
        return IsEmpty(key)
    if "range" in obj:
        bounds = obj["range"]
        if not isinstance(bounds, dict) or not bounds or set(bounds) - set(_RANGE_OPS):
            raise InvalidFilterError(
                f"{where}.range must be an object with some of {list(_RANGE_OPS)}, got {bounds!r}"
            )
        for op, bound in bounds.items():
            if isinstance(bound, bool) or not isinstance(bound, int | float) or bound != bound:
                raise InvalidFilterError(f"{where}.range.{op} must be a number, got {bound!r}")
        # integers stay integers: compared exactly, also beyond float64's 2**53
        return Range(key, tuple((op, b) for op, b in sorted(bounds.items())))
    match = obj["match"]
    if not isinstance(match, dict) or len(match) != 1:
        raise InvalidFilterError(
            f"{where}.match must be one of {{'value': v}}, {{'any': [...]}}, "
            f"{{'except': [...]}}; got {match!r}"
        )
    ((kind, value),) = match.items()
    if kind == "value":
        return Match(key, (_scalar(value, where),))
    if kind in ("any", "except"):
        if not isinstance(value, list):
            raise InvalidFilterError(f"{where}.match.{kind} must be a list, got {value!r}")
        _check_length(value, f"{where}.match.{kind}")
        return Match(key, tuple(_scalar(v, where) for v in value), negate=kind == "except")
    raise InvalidFilterError(
        f"{where}.match: unknown kind {kind!r}; expected 'value', 'any' or 'except'"
    )


def filter_keys(flt: Filter) -> set[str]:
    """Every payload key a filter reads (the columns it needs)."""
    keys: set[str] = set()
    for cond in (*flt.must, *flt.should, *flt.must_not):
        if isinstance(cond, Filter):
            keys |= filter_keys(cond)
        elif isinstance(cond, Match | Range | IsEmpty):
            keys.add(cond.key)
    return keys


def evaluate(
    flt: Filter,
    n: int,
    column: Callable[[str], FieldColumn],
    rows_of_ids: Callable[[tuple[Any, ...]], np.ndarray],
    start: int = 0,
) -> np.ndarray:
    """Boolean mask over rows ``start..n`` (length ``n - start``) of the rows that satisfy
    ``flt``. Rows never change once written, so a mask can be extended row range by row range.

    ``column(key)`` returns the field's column; ``rows_of_ids(ids)`` the rows of live ids.
    """
    mask = np.ones(n - start, dtype=bool)
    for cond in flt.must:
        mask &= _condition(cond, n, column, rows_of_ids, start)
    if flt.should:
        any_of = np.zeros(n - start, dtype=bool)
        for cond in flt.should:
            any_of |= _condition(cond, n, column, rows_of_ids, start)
        mask &= any_of
    for cond in flt.must_not:
        mask &= ~_condition(cond, n, column, rows_of_ids, start)
    return mask


def _condition(cond: Any, n: int, column, rows_of_ids, start: int) -> np.ndarray:
    if isinstance(cond, Filter):
        return evaluate(cond, n, column, rows_of_ids, start)
    if isinstance(cond, HasId):
        mask = np.zeros(n - start, dtype=bool)
        rows = rows_of_ids(cond.ids)
        mask[rows[(rows >= start) & (rows < n)] - start] = True
        return mask
    col = column(cond.key)
    if isinstance(cond, Match):
        hit = col.match_any(list(cond.values), n, start)
        return col.present(n, start) & ~hit if cond.negate else hit
    if isinstance(cond, Range):
        return col.in_range(dict(cond.bounds), n, start)
    return ~col.present(n, start)  # IsEmpty
