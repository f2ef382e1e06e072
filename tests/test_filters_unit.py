"""Unit tests of the payload filter language: parsing, every error path, and evaluation on
payload columns checked against a plain-Python reference evaluator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from quiver.db.filters import MAX_FILTER_DEPTH, Filter, HasId, IsEmpty, Match, Range, parse_filter
from quiver.db.filters import evaluate as evaluate_filter
from quiver.db.payloads import MISSING, FieldColumn, field_value
from quiver.errors import InvalidFilterError, InvalidInputError

# ----------------------------------------------------------------------------- reference


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def same_value(a: Any, b: Any) -> bool:
    """The grammar's equality: numbers by value (1 == 1.0), strings and booleans by type."""
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and isinstance(a, str | bool) and a == b


def elements(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def is_empty(value: Any) -> bool:
    return value is MISSING or value is None or value == []


def holds(cond: dict[str, Any], payload: dict | None, row_id: Any) -> bool:
    """Whether a (valid) condition holds for one payload, straight from the grammar."""
    if set(cond) & {"must", "should", "must_not"}:
        return matches(cond, payload, row_id)
    if "has_id" in cond:
        return row_id in cond["has_id"]
    value = field_value(payload, cond["key"])
    if "is_empty" in cond:
        return is_empty(value)
    if "range" in cond:
        ops = {
            "gt": lambda x, b: x > b,
            "gte": lambda x, b: x >= b,
            "lt": lambda x, b: x < b,
            "lte": lambda x, b: x <= b,
        }
        return any(
            is_number(e) and all(ops[op](e, b) for op, b in cond["range"].items())
            for e in elements(value)
        )
    ((kind, wanted),) = cond["match"].items()
    wanted = [wanted] if kind == "value" else wanted
    hit = any(same_value(e, w) for e in elements(value) for w in wanted)
    return (not is_empty(value) and not hit) if kind == "except" else hit


def matches(flt: dict[str, Any], payload: dict | None, row_id: Any) -> bool:
    def conds(clause: str) -> list[dict]:
        c = flt.get(clause, [])
        return [c] if isinstance(c, dict) else c

    return (
        all(holds(c, payload, row_id) for c in conds("must"))
        and (not conds("should") or any(holds(c, payload, row_id) for c in conds("should")))
        and not any(holds(c, payload, row_id) for c in conds("must_not"))
    )


# ----------------------------------------------------------------------------- harness


class Rows:
    """Payloads and ids of rows 0..n, with the columns and id lookup ``evaluate`` reads."""

    def __init__(self, payloads: list[dict | None], ids: list[Any] | None = None) -> None:
        self.payloads = payloads
        self.ids = list(range(100, 100 + len(payloads))) if ids is None else ids
        self.row_of = {i: r for r, i in enumerate(self.ids)}
        self.columns: dict[str, FieldColumn] = {}

    def column(self, key: str) -> FieldColumn:
        if key not in self.columns:
            col = FieldColumn()
            col.append([field_value(p, key) for p in self.payloads])
            self.columns[key] = col
        return self.columns[key]

    def rows_of_ids(self, ids: tuple[Any, ...]) -> np.ndarray:
        rows = [self.row_of[i] for i in ids if i in self.row_of]
        return np.array(rows, dtype=np.int64)

    def mask(self, obj: dict, n: int | None = None, start: int = 0) -> np.ndarray:
        n = len(self.payloads) if n is None else n
        return evaluate_filter(parse_filter(obj), n, self.column, self.rows_of_ids, start)

    def expected(self, obj: dict) -> np.ndarray:
        return np.array(
            [matches(obj, p, i) for p, i in zip(self.payloads, self.ids, strict=True)], dtype=bool
        )

    def selected(self, obj: dict) -> list[int]:
        mask = self.mask(obj)
        assert mask.tolist() == self.expected(obj).tolist(), obj
        return np.flatnonzero(mask).tolist()


PAYLOADS = [
    {"color": "red", "size": 3, "tags": ["a", "b"], "meta": {"level": 1}},  # 0
    {"color": "blue", "size": 3.0, "tags": [], "meta": {"level": 2.5}},  # 1
    {"color": "red", "size": 10, "tags": ["b"], "flag": True},  # 2
    {"color": None, "size": "3", "tags": ["c", 3]},  # 3
    {"size": -1.5, "flag": False, "tags": "a"},  # 4
    None,  # 5: no payload
    {"color": ["red", "green"], "size": [1, 20], "flag": 1},  # 6
]


@pytest.fixture
def rows() -> Rows:
    return Rows(PAYLOADS)


def cond(key: str, **kind: Any) -> dict[str, Any]:
    return {"key": key, **kind}


# ----------------------------------------------------------------------------- conditions


def test_match_value(rows: Rows) -> None:
    assert rows.selected({"must": [cond("color", match={"value": "red"})]}) == [0, 2, 6]
    # numbers by value, not by type: 3 matches 3.0, never the string "3"
    assert rows.selected({"must": [cond("size", match={"value": 3})]}) == [0, 1]
    assert rows.selected({"must": [cond("size", match={"value": 3.0})]}) == [0, 1]
    assert rows.selected({"must": [cond("size", match={"value": "3"})]}) == [3]
    # booleans are not numbers: True does not match 1
    assert rows.selected({"must": [cond("flag", match={"value": True})]}) == [2]
    assert rows.selected({"must": [cond("flag", match={"value": 1})]}) == [6]
    assert rows.selected({"must": [cond("meta.level", match={"value": 2.5})]}) == [1]


def test_match_any_and_except(rows: Rows) -> None:
    assert rows.selected({"must": [cond("color", match={"any": ["blue", "green"]})]}) == [1, 6]
    assert rows.selected({"must": [cond("tags", match={"any": ["a"]})]}) == [0, 4]
    assert rows.selected({"must": [cond("color", match={"any": []})]}) == []
    # except: present (not absent, null or []) and equal to none of the values
    assert rows.selected({"must": [cond("color", match={"except": ["red"]})]}) == [1]
    assert rows.selected({"must": [cond("tags", match={"except": ["b"]})]}) == [3, 4]
    assert rows.selected({"must": [cond("color", match={"except": []})]}) == [0, 1, 2, 6]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"gt": 3}, [2, 6]),
        ({"gte": 3}, [0, 1, 2, 6]),
        ({"lt": 3}, [4, 6]),
        ({"lte": 3}, [0, 1, 4, 6]),
        ({"gte": 3, "lte": 3}, [0, 1]),
        ({"gt": 1, "lt": 20}, [0, 1, 2]),  # row 6 [1, 20]: no single element inside
        ({"gt": 5, "lt": 1}, []),  # an empty interval is valid and matches nothing
        ({"gte": float("-inf")}, [0, 1, 2, 4, 6]),  # only numbers are ever in a range
    ],
)
def test_range(rows: Rows, bounds: dict, expected: list[int]) -> None:
    assert rows.selected({"must": [cond("size", range=bounds)]}) == expected


def test_is_empty(rows: Rows) -> None:
    assert rows.selected({"must": [cond("color", is_empty=True)]}) == [3, 4, 5]
    assert rows.selected({"must": [cond("tags", is_empty=True)]}) == [1, 5, 6]
    assert rows.selected({"must": [cond("meta.level", is_empty=True)]}) == [2, 3, 4, 5, 6]


def test_has_id(rows: Rows) -> None:
    assert rows.selected({"must": [{"has_id": [102, 100, 999]}]}) == [0, 2]
    assert rows.selected({"must": [{"has_id": []}]}) == []
    assert rows.selected({"must_not": [{"has_id": [100]}]}) == [1, 2, 3, 4, 5, 6]


def test_clauses_combine(rows: Rows) -> None:
    red = cond("color", match={"value": "red"})
    small = cond("size", range={"lte": 3})
    assert rows.selected({"must": [red, small]}) == [0, 6]
    assert rows.selected({"should": [red, small]}) == [0, 1, 2, 4, 6]
    assert rows.selected({"must_not": [red, small]}) == [3, 5]
    assert rows.selected({"must": [red], "must_not": [small]}) == [2]
    assert rows.selected({"must": red}) == [0, 2, 6]  # one condition may stand for a list


@pytest.mark.parametrize("clause", ["must", "should", "must_not"])
def test_empty_clauses_admit_every_row(rows: Rows, clause: str) -> None:
    assert rows.selected({clause: []}) == list(range(len(PAYLOADS)))


def test_no_filter_is_none() -> None:
    assert parse_filter(None) is None
    assert parse_filter({}) is None


def test_deep_nesting(rows: Rows) -> None:
    red = cond("color", match={"value": "red"})
    flt = {"must_not": [{"must_not": [{"should": [{"must": [red]}]}]}]}
    assert rows.selected(flt) == [0, 2, 6]  # not not red
    nested = {"must": [red]}
    for _ in range(MAX_FILTER_DEPTH):
        nested = {"should": [nested, {"has_id": [101]}]}
    assert rows.selected(nested) == [0, 1, 2, 6]


def test_parse_builds_the_documented_conditions() -> None:
    flt = parse_filter(
        {
            "must": [cond("a.b", match={"any": [1, "x"]}), cond("c", range={"lt": 2, "gt": 1})],
            "should": {"has_id": [5]},
            "must_not": [cond("d", is_empty=True), cond("e", match={"except": [True]})],
        }
    )
    assert flt == Filter(
        must=(Match("a.b", (1, "x")), Range("c", (("gt", 1.0), ("lt", 2.0)))),
        should=(HasId((5,)),),
        must_not=(IsEmpty("d"), Match("e", (True,), negate=True)),
    )


def test_evaluating_a_row_range_matches_the_whole(rows: Rows) -> None:
    flt = {"should": [cond("color", match={"value": "red"}), {"has_id": [101, 105]}]}
    whole = rows.mask(flt)
    for start in range(len(PAYLOADS) + 1):
        assert rows.mask(flt, start=start).tolist() == whole[start:].tolist()
    # columns may hold more rows than the view being filtered
    assert rows.mask(flt, n=4).tolist() == whole[:4].tolist()
    assert rows.mask(flt, n=5, start=2).tolist() == whole[2:5].tolist()


# ----------------------------------------------------------------------------- errors


def nested_filter(levels: int) -> dict:
    """A filter ``levels`` objects deep (1 = just the top-level filter)."""
    flt: dict = {"must": [cond("a", is_empty=True)]}
    for _ in range(levels - 1):
        flt = {"must": [flt]}
    return flt


def test_nesting_limit() -> None:
    # the top-level filter plus MAX_FILTER_DEPTH nested levels are accepted
    assert parse_filter(nested_filter(MAX_FILTER_DEPTH + 1)) is not None
    with pytest.raises(InvalidFilterError, match=f"nest at most {MAX_FILTER_DEPTH} levels"):
        parse_filter(nested_filter(MAX_FILTER_DEPTH + 2))


BAD_FILTERS = [
    # (filter, fragment of the message that names the problem)
    ([], "filter must be an object, got list"),
    ("color", "filter must be an object, got str"),
    ({"filter": []}, "unknown clause(s) ['filter']"),
    ({"must": [], "Must": []}, "unknown clause(s) ['Must']"),
    ({"must": "x"}, "filter.must must be a list of conditions, got str"),
    ({"should": None}, "filter.should must be a list of conditions, got NoneType"),
    ({"must": ["x"]}, "filter.must[0] must be an object, got str"),
    ({"must": [{}]}, "got keys []"),
    ({"must": [{"match": {"value": 1}}]}, "got keys ['match']"),
    ({"must": [cond("", is_empty=True)]}, "expected a nested filter"),
    ({"must": [{"key": 3, "is_empty": True}]}, "expected a nested filter"),
    ({"must": [{"key": "a"}]}, "exactly one of 'match', 'range', 'is_empty'; got []"),
    ({"must": [cond("a", is_empty=True, match={"value": 1})]}, "got ['is_empty', 'match']"),
    ({"must": [cond("a", equals=1)]}, "got ['equals']"),
    ({"must": [cond("a", is_empty=False)]}, "is_empty must be true"),
    ({"must": [cond("a", is_empty=1)]}, "is_empty must be true"),
    ({"must": [cond("a", range=[1, 2])]}, "filter.must[0].range must be an object"),
    ({"must": [cond("a", range={})]}, "range must be an object with some of"),
    ({"must": [cond("a", range={"gt": 1, "below": 2})]}, "range must be an object"),
    ({"must": [cond("a", range={"gt": "1"})]}, "filter.must[0].range.gt must be a number"),
    ({"must": [cond("a", range={"lt": True})]}, "range.lt must be a number, got True"),
    ({"must": [cond("a", range={"lte": None})]}, "range.lte must be a number, got None"),
    ({"must": [cond("a", range={"gte": float("nan")})]}, "range.gte must be a number, got nan"),
    ({"must": [cond("a", match="red")]}, "match must be one of"),
    ({"must": [cond("a", match={})]}, "match must be one of"),
    ({"must": [cond("a", match={"value": 1, "any": [1]})]}, "match must be one of"),
    ({"must": [cond("a", match={"text": "x"})]}, "unknown kind 'text'"),
    ({"must": [cond("a", match={"value": None})]}, "got None"),
    ({"must": [cond("a", match={"value": [1]})]}, "got [1]"),
    ({"must": [cond("a", match={"value": {"b": 1}})]}, "got {'b': 1}"),
    ({"must": [cond("a", match={"value": float("nan")})]}, "got nan"),
    ({"must": [cond("a", match={"any": "red"})]}, "match.any must be a list, got 'red'"),
    ({"must": [cond("a", match={"except": 3})]}, "match.except must be a list, got 3"),
    ({"must": [cond("a", match={"any": ["x", None]})]}, "got None"),
    ({"must": [{"has_id": 5}]}, "has_id takes a list of ids"),
    ({"must": [{"has_id": [5], "key": "a"}]}, "has_id takes a list of ids and nothing else"),
    ({"must": [{"must": [], "key": "a"}]}, "filter.must[0]: unknown clause(s) ['key']"),
    (
        {"should": [{"must_not": [cond("a", range={"gt": "x"})]}]},
        "filter.should[0].must_not[0].range.gt must be a number",
    ),
]


@pytest.mark.parametrize(("obj", "message"), BAD_FILTERS, ids=[m for _, m in BAD_FILTERS])
def test_malformed_filters_are_rejected_with_a_message_naming_the_problem(
    obj: Any, message: str
) -> None:
    with pytest.raises(InvalidFilterError) as raised:
        parse_filter(obj)
    assert message in str(raised.value)
    assert isinstance(raised.value, InvalidInputError | ValueError)


# ----------------------------------------------------------------------------- randomized

KEYS = ["a", "b", "n.x"]
SCALARS: list[Any] = [0, 1, 2, 2.5, -1, "x", "y", "1", True, False]


def random_value(rng: np.random.Generator) -> Any:
    kind = rng.integers(8)
    if kind == 0:
        return MISSING
    if kind == 1:
        return None
    if kind == 2:
        return [SCALARS[i] for i in rng.choice(len(SCALARS), size=rng.integers(0, 4))]
    return SCALARS[rng.integers(len(SCALARS))]


def random_payload(rng: np.random.Generator) -> dict | None:
    if rng.random() < 0.1:
        return None
    payload: dict[str, Any] = {}
    for key in ("a", "b"):
        value = random_value(rng)
        if value is not MISSING:
            payload[key] = value
    inner = random_value(rng)
    if inner is not MISSING:
        payload["n"] = {"x": inner}
    elif rng.random() < 0.5:
        payload["n"] = 5  # "n.x" through a non-object: absent
    return payload


def random_condition(rng: np.random.Generator, depth: int, n_ids: int) -> dict[str, Any]:
    kind = rng.integers(7 if depth < 3 else 6)
    key = KEYS[rng.integers(len(KEYS))]
    if kind == 0:
        return cond(key, match={"value": SCALARS[rng.integers(len(SCALARS))]})
    if kind in (1, 2):
        values = [SCALARS[i] for i in rng.choice(len(SCALARS), size=rng.integers(0, 3))]
        return cond(key, match={"any" if kind == 1 else "except": values})
    if kind == 3:
        ops = rng.choice(["gt", "gte", "lt", "lte"], size=rng.integers(1, 3), replace=False)
        return cond(key, range={str(op): float(rng.integers(-2, 4)) / 2 for op in ops})
    if kind == 4:
        return cond(key, is_empty=True)
    if kind == 5:
        return {"has_id": rng.integers(0, n_ids + 3, size=rng.integers(0, 4)).tolist()}
    return random_filter(rng, depth + 1, n_ids)


def random_filter(rng: np.random.Generator, depth: int, n_ids: int) -> dict[str, Any]:
    flt = {}
    for clause in ("must", "should", "must_not"):
        if rng.random() < 0.6:
            size = rng.integers(0, 3)
            flt[clause] = [random_condition(rng, depth, n_ids) for _ in range(size)]
    return flt or {"must": [random_condition(rng, depth, n_ids)]}


@pytest.mark.parametrize("seed", range(4))
def test_random_filters_agree_with_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    rows = Rows([random_payload(rng) for _ in range(n)], ids=list(range(n)))
    selective = 0
    for _ in range(150):
        flt = random_filter(rng, 0, n)
        mask = rows.mask(flt)
        expected = rows.expected(flt)
        assert mask.tolist() == expected.tolist(), flt
        start = int(rng.integers(0, n))
        assert rows.mask(flt, start=start).tolist() == expected[start:].tolist(), flt
        selective += 0 < mask.sum() < n
    assert selective > 50  # the generated filters are neither all-true nor all-false


def test_a_taken_column_filters_like_its_rows() -> None:
    rng = np.random.default_rng(9)
    rows = Rows([random_payload(rng) for _ in range(80)], ids=list(range(80)))
    keep = np.flatnonzero(rng.random(80) < 0.6)
    kept = Rows([rows.payloads[r] for r in keep], ids=list(range(keep.shape[0])))
    for key in KEYS:
        kept.columns[key] = rows.column(key).take(keep)
    for _ in range(100):
        flt = random_filter(rng, 1, 0)  # no has_id: ids are renumbered
        assert kept.mask(flt).tolist() == kept.expected(flt).tolist(), flt


# ----------------------------------------------------------------------------- known gaps


def test_an_object_value_is_not_empty() -> None:
    rows = Rows([{"meta": {"level": 1}}, {}])
    assert rows.mask({"must": [cond("meta", is_empty=True)]}).tolist() == [False, True]


def test_large_integers_match_exactly() -> None:
    rows = Rows([{"id": 2**53}, {"id": 2**53 + 1}])
    assert rows.mask({"must": [cond("id", match={"value": 2**53 + 1})]}).tolist() == [
        False,
        True,
    ]


@pytest.mark.parametrize(
    "bounds",
    [{"gte": 2**53 + 1}, {"gt": 2**53}, {"lt": 2**53 + 1}, {"lte": 2**53 + 1}, {"gt": 2**70}],
)
def test_ranges_compare_large_integers_exactly(bounds: dict) -> None:
    values = [2**53, 2**53 + 1, 2**53 + 2, float(2**53), [2**53 + 1], 2**80]
    rows = Rows([{"n": v} for v in values])
    flt = {"must": [cond("n", range=bounds)]}
    assert rows.mask(flt).tolist() == rows.expected(flt).tolist()
