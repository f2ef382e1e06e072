"""Point payloads: validation, JSON text storage, and per-field columns for filters.

Payloads are JSON objects stored as compact JSON text, one per row (rows align with the index).
A filter on a field reads a :class:`FieldColumn` built from the payloads on first use and kept
up to date by every later write: numbers in a float64 array, other scalars (strings, booleans)
as dictionary codes in an int32 array, so that a condition over all rows is one vectorised
comparison. Rows whose value is a list are kept apart and matched element by element; so are
integers that float64 cannot hold exactly (beyond 2**53), which are compared exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from quiver.errors import CorruptIndexError, InvalidInputError

MISSING = object()  # a field absent from a payload
#: Deepest nesting of objects and lists in a payload (the payload object itself is level 1):
#: deeper values would break JSON encoders with recursion limits on every later read.
MAX_PAYLOAD_DEPTH = 32
#: Largest payload, as UTF-8 JSON text.
MAX_PAYLOAD_BYTES = 1 << 20


def payload_depth(value: Any, stop_after: int | None = None) -> int:
    """Nesting depth of objects and lists in ``value`` (a scalar is 0, ``{}`` is 1), without
    recursion; stops counting once the depth exceeds ``stop_after``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if stop_after is not None and deepest > stop_after:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_payload_depth(payload: Any, where: str = "payload") -> None:
    """Raise :class:`InvalidInputError` when ``payload`` nests deeper than the limit."""
    depth = payload_depth(payload, stop_after=MAX_PAYLOAD_DEPTH)
    if depth > MAX_PAYLOAD_DEPTH:
        raise InvalidInputError(
            f"{where} nests objects and lists at most {MAX_PAYLOAD_DEPTH} levels deep, "
            f"got more than {MAX_PAYLOAD_DEPTH}"
        )


def encode_payload(payload: Any, where: str = "payload") -> str | None:
    """Return ``payload`` (a JSON object or None) as compact JSON text, or raise."""
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"{where} must be a JSON object (dict) or None, got {type(payload).__name__}"
        )
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))  # lone surrogates cannot be stored as UTF-8
    except RecursionError:
        check_payload_depth(payload, where)
        raise
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInputError(f"{where} is not JSON-serialisable as UTF-8: {exc}") from exc
    if text.count("{") + text.count("[") > MAX_PAYLOAD_DEPTH:  # cheap test before the walk
        check_payload_depth(payload, where)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInputError(
            f"{where} is at most {MAX_PAYLOAD_BYTES} bytes of JSON, got {size} bytes"
        )
    return text


def check_payloads(payloads: Any, n: int) -> list[str | None]:
    """``n`` payloads (a list of JSON objects or None; None for all) as JSON texts, or raise."""
    if payloads is None:
        return [None] * n
    if isinstance(payloads, dict) or not isinstance(payloads, Sequence):
        raise InvalidInputError(
            f"payloads must be a list (one per point), got {type(payloads).__name__}"
        )
    if len(payloads) != n:
        raise InvalidInputError(
            f"payloads length mismatch: expected {n} (one per point), got {len(payloads)}"
        )
    return [encode_payload(p, f"payloads[{i}]") for i, p in enumerate(payloads)]


def decode_payload(text: str | None) -> dict[str, Any] | None:
    """Inverse of :func:`encode_payload` (CorruptIndexError for stored text that is not a JSON
    object: parsing every payload on open would cost too much, so it is checked here)."""
    if text is None:
        return None
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise CorruptIndexError(f"a stored payload is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise CorruptIndexError(f"a stored payload is not a JSON object: {text[:40]!r}")
    return payload


def field_value(payload: dict[str, Any] | None, path: str) -> Any:
    """Value at dotted ``path`` (``"a.b"`` reads ``payload["a"]["b"]``), or ``MISSING``."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float_exact(value: Any) -> bool:
    """Whether a number survives the float64 column unchanged (big integers do not)."""
    return not isinstance(value, int) or -(1 << 53) <= value <= 1 << 53


def _as_float(value: int | float) -> float:
    """``float(value)``, with integers beyond float64's range as +-inf (kept exactly apart)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _scalar_key(value: Any) -> tuple[str, Any] | None:
    """Dictionary key of a non-numeric scalar (bool and str kept apart from 1 and "1")."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, str):
        return ("s", value)
    return None


class FieldColumn:
    """One payload field over every row, for vectorised filtering."""

    def __init__(self) -> None:
        self.numbers = np.empty(0, dtype=np.float64)  # NaN where absent or not a number
        self.codes = np.empty(0, dtype=np.int32)  # dictionary code, -1 where absent
        self.dictionary: dict[tuple[str, Any], int] = {}
        self.objects = np.empty(0, dtype=bool)  # rows whose value is a JSON object
        self.lists: dict[int, list[Any]] = {}  # rows whose value is a list
        self.exact: dict[int, int] = {}  # rows holding an integer float64 cannot hold exactly
        self.size = 0

    def append(self, values: list[Any]) -> None:
        """Append one value per new row (``MISSING`` where the payload lacks the field)."""
        n = len(values)
        need = self.size + n
        if need > self.numbers.shape[0]:
            cap = max(need, int(self.numbers.shape[0] * 1.5) + 64)
            numbers = np.full(cap, np.nan, dtype=np.float64)
            codes = np.full(cap, -1, dtype=np.int32)
            objects = np.zeros(cap, dtype=bool)
            numbers[: self.size] = self.numbers[: self.size]
            codes[: self.size] = self.codes[: self.size]
            objects[: self.size] = self.objects[: self.size]
            self.numbers, self.codes, self.objects = numbers, codes, objects
        for i, value in enumerate(values):
            row = self.size + i
            self.numbers[row] = np.nan
            self.codes[row] = -1
            self.objects[row] = isinstance(value, dict)
            if isinstance(value, list):
                self.lists[row] = value
            elif _is_number(value):
                self.numbers[row] = _as_float(value)
                if not _float_exact(value):
                    self.exact[row] = value
            else:
                key = _scalar_key(value)
                if key is not None:
                    self.codes[row] = self.dictionary.setdefault(key, len(self.dictionary))
        self.size = need

    def take(self, rows: np.ndarray) -> FieldColumn:
        """A new column holding ``rows`` (ascending) renumbered 0..len(rows)."""
        out = FieldColumn()
        out.numbers = self.numbers[rows]
        out.codes = self.codes[rows]
        out.objects = self.objects[rows]
        out.dictionary = dict(self.dictionary)
        if self.lists or self.exact:
            new_row = {int(old): new for new, old in enumerate(rows)}
            out.lists = {new_row[r]: v for r, v in self.lists.items() if r in new_row}
            out.exact = {new_row[r]: v for r, v in self.exact.items() if r in new_row}
        out.size = int(rows.shape[0])
        return out

    def _list_rows(self, n: int, test, start: int = 0) -> np.ndarray:
        """Rows ``start..n`` holding a list with an element that passes ``test``, as offsets
        from ``start``."""
        return np.fromiter(
            (
                r - start
                for r, values in self.lists.items()
                if start <= r < n and any(test(v) for v in values)
            ),
            dtype=np.int64,
        )

    def match_any(self, values: list[Any], n: int, start: int = 0) -> np.ndarray:
        """Which of rows ``start..n`` hold a value equal to one of ``values``."""
        mask = np.zeros(n - start, dtype=bool)
        numbers = [float(v) for v in values if _is_number(v) and _float_exact(v)]
        if numbers:
            mask |= np.isin(self.numbers[start:n], numbers)
        codes = [self.dictionary[k] for v in values if (k := _scalar_key(v)) in self.dictionary]
        if codes:
            mask |= np.isin(self.codes[start:n], codes)
        wanted = {_element_key(v) for v in values}
        for r, value in self.exact.items():  # Python compares int and float exactly
            if start <= r < n:
                mask[r - start] = ("n", value) in wanted
        if self.lists:
            mask[self._list_rows(n, lambda v: _element_key(v) in wanted, start)] = True
        return mask

    def in_range(self, bounds: dict[str, float], n: int, start: int = 0) -> np.ndarray:
        """Which of rows ``start..n`` hold a number satisfying every bound (``gt``, ``gte``,
        ``lt``, ``lte``)."""
        col = self.numbers[start:n]
        mask = ~np.isnan(col)
        ops = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
        for op, bound in bounds.items():
            mask &= _float_comparison(op, bound)(col)

        def inside(v: Any) -> bool:
            return _is_number(v) and all(ops[op](v, bound) for op, bound in bounds.items())

        for r, value in self.exact.items():
            if start <= r < n:
                mask[r - start] = inside(value)
        if self.lists:
            mask[self._list_rows(n, inside, start)] = True
        return mask

    def present(self, n: int, start: int = 0) -> np.ndarray:
        """Which of rows ``start..n`` hold a scalar, an object or a non-empty list in the
        field (``is_empty`` is the rest: absent, null or ``[]``)."""
        mask = ~np.isnan(self.numbers[start:n]) | (self.codes[start:n] >= 0) | self.objects[start:n]
        mask[[r - start for r, v in self.lists.items() if start <= r < n and v]] = True
        return mask


def _float_comparison(op: str, bound: float | int) -> Any:
    """``x <op> bound`` over a float64 column, exact also for an integer bound that float64
    cannot hold: every column value is a float, so it lies strictly on one side of such a
    bound, and the comparison becomes one against the neighbouring float."""
    if _float_exact(bound):
        value = float(bound)
        return {
            "gt": lambda c: c > value,
            "gte": lambda c: c >= value,
            "lt": lambda c: c < value,
            "lte": lambda c: c <= value,
        }[op]
    nearest = _as_float(bound)
    if nearest > bound:
        below, above = float(np.nextafter(nearest, -np.inf)), nearest
    else:
        below, above = nearest, float(np.nextafter(nearest, np.inf))
    if op in ("gt", "gte"):
        return lambda c: c >= above
    return lambda c: c <= below


def _element_key(value: Any) -> tuple[str, Any] | None:
    key = _scalar_key(value)
    if key is None and _is_number(value) and (isinstance(value, int) or math.isfinite(value)):
        return ("n", value)  # int and float keys are equal (and hash alike) by exact value
    return key


def payload_change(payload: Any, overwrite: bool) -> Callable[[dict[str, Any] | None], Any]:
    """A validated payload update: merge ``payload``'s keys into a point's payload, or replace
    it (``overwrite``). Raises InvalidInputError for a payload that is not a JSON object."""
    encode_payload(payload, "payload")  # the same checks as an upsert's
    if not isinstance(payload, dict):
        raise InvalidInputError(f"payload must be a JSON object, got {type(payload).__name__}")
    new = dict(payload)
    if overwrite:
        return lambda old: new
    return lambda old: {**(old or {}), **new}


def keys_removed(keys: Any) -> Callable[[dict[str, Any] | None], Any]:
    """A payload update that removes ``keys`` (top-level names), or the whole payload (None)."""
    if keys is None:
        return lambda old: None
    if (
        isinstance(keys, str)
        or not isinstance(keys, Sequence)
        or not all(isinstance(k, str) and k for k in keys)
    ):
        raise InvalidInputError(f"keys must be a list of non-empty strings, got {keys!r}")
    gone = set(keys)
    return lambda old: None if old is None else {k: v for k, v in old.items() if k not in gone}
