"""Vectors and ids given as columns (pyarrow arrays, chunked arrays and table columns, pandas
and polars Series) work as the same numpy input does, in Index and Collection; a null in a
vector column raises InvalidInputError naming the row, and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import quiver
from quiver.validation import as_matrix

N, DIM, K = 80, 8, 5
X = np.random.default_rng(11).standard_normal((N, DIM)).astype(np.float32)
QUERIES = X[[3, 40, 77]] + 0.01
INT_IDS = np.arange(N, dtype=np.int64) * 3 + 7
STR_IDS = [f"p{i}" for i in range(N)]
FSL = pa.list_(pa.float32(), DIM)  # the Arrow type of a vector column


def fixed_size_list(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


#: Each kind of vector column, built from a float32 (n, dim) array.
VECTOR_COLUMNS: dict[str, Callable[[np.ndarray], Any]] = {
    "arrow-fixed-size-list": fixed_size_list,
    "arrow-list": lambda x: pa.array(x.tolist(), type=pa.list_(pa.float32())),
    "arrow-large-list-float64": lambda x: pa.array(x.tolist(), type=pa.large_list(pa.float64())),
    "arrow-chunked": lambda x: pa.chunked_array([fixed_size_list(x[:2]), fixed_size_list(x[2:])]),
    "arrow-table-column": lambda x: pa.table({"v": fixed_size_list(x)}).column("v"),
    "pandas-lists": lambda x: pd.Series(x.tolist()),
    "pandas-arrays": lambda x: pd.Series(list(x)),
    "polars-array": pl.Series,
    "polars-list": lambda x: pl.Series(x.tolist()),
}
#: Each kind of id column, built from a list of ints or strings.
ID_COLUMNS: dict[str, Callable[[list[Any]], Any]] = {
    "arrow": pa.array,
    "arrow-chunked": lambda ids: pa.chunked_array([ids[:10], ids[10:]]),
    "pandas": pd.Series,
    "polars": pl.Series,
}


def test_fixed_size_list_is_read_without_a_copy() -> None:
    column = fixed_size_list(X)
    values = np.frombuffer(column.values.buffers()[1], dtype=np.float32)
    view = column.flatten().to_numpy(zero_copy_only=False)
    assert np.shares_memory(view, values)  # the path as_matrix takes before its own copy
    np.testing.assert_array_equal(as_matrix(column, DIM), X)
    assert not np.shares_memory(as_matrix(column, DIM), values)  # the caller's data is safe


# --- Index --------------------------------------------------------------------------------


def index_answers(vectors: Any, ids: Any) -> tuple[np.ndarray, np.ndarray]:
    index = quiver.Index(DIM, metric="l2", num_threads=1)
    index.add(vectors, ids=ids)
    found = index.search(QUERIES, k=K, ef=N)
    return found.ids, found.distances


@pytest.fixture(scope="module")
def index_reference() -> tuple[np.ndarray, np.ndarray]:
    return index_answers(X, INT_IDS)


@pytest.mark.parametrize("kind", VECTOR_COLUMNS)
def test_index_add_vector_column(kind: str, index_reference: tuple[np.ndarray, ...]) -> None:
    ids, distances = index_answers(VECTOR_COLUMNS[kind](X), INT_IDS)
    np.testing.assert_array_equal(ids, index_reference[0])
    np.testing.assert_allclose(distances, index_reference[1], rtol=1e-6)


@pytest.mark.parametrize("kind", ID_COLUMNS)
def test_index_add_id_column(kind: str, index_reference: tuple[np.ndarray, ...]) -> None:
    ids, _ = index_answers(X, ID_COLUMNS[kind](INT_IDS.tolist()))
    np.testing.assert_array_equal(ids, index_reference[0])


# --- Collection ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[quiver.Database]:
    with quiver.Database(tmp_path_factory.mktemp("columns") / "db") as database:
        yield database


def collection_answers(
    db: quiver.Database, name: str, ids: Any, vectors: Any, queries: Any
) -> list[list[tuple[Any, float]]]:
    coll = db.create_collection(name, DIM, "cosine", id_type="string")
    assert coll.upsert(ids, vectors) == N
    return [[(h.id, round(h.score, 5)) for h in hits] for hits in coll.search_batch(queries, k=K)]


@pytest.fixture(scope="module")
def collection_reference(db: quiver.Database) -> list[list[tuple[Any, float]]]:
    return collection_answers(db, "numpy", STR_IDS, X, QUERIES)


@pytest.mark.parametrize("kind", VECTOR_COLUMNS)
def test_collection_vector_columns(
    db: quiver.Database, kind: str, collection_reference: list[list[tuple[Any, float]]]
) -> None:
    column = VECTOR_COLUMNS[kind]
    answers = collection_answers(db, "v-" + kind, STR_IDS, column(X), column(QUERIES))
    assert answers == collection_reference


@pytest.mark.parametrize("kind", ID_COLUMNS)
def test_collection_id_columns(
    db: quiver.Database, kind: str, collection_reference: list[list[tuple[Any, float]]]
) -> None:
    ids = ID_COLUMNS[kind](STR_IDS)
    assert collection_answers(db, "i-" + kind, ids, X, QUERIES) == collection_reference
    coll = db.get_collection("i-" + kind)
    assert coll.delete(ID_COLUMNS[kind](STR_IDS[:20])) == 20 and coll.count() == N - 20


@pytest.mark.parametrize(
    "single", [pa.array(QUERIES[0]), pd.Series(QUERIES[0]), pl.Series(QUERIES[0])]
)
def test_search_takes_one_vector_as_a_column(
    db: quiver.Database, single: Any, collection_reference: list[list[tuple[Any, float]]]
) -> None:
    hits = db.get_collection("numpy").search(single, k=K)
    assert [(h.id, round(h.score, 5)) for h in hits] == collection_reference[0]


def test_uint64_id_columns(db: quiver.Database) -> None:
    coll = db.create_collection("uint-ids", DIM, "l2")
    coll.upsert(pl.Series(INT_IDS, dtype=pl.UInt64), pa.table({"v": fixed_size_list(X)})["v"])
    assert coll.get(int(INT_IDS[9]), with_vector=True).vector == pytest.approx(X[9].tolist())


# --- nulls --------------------------------------------------------------------------------


def with_null_vector(x: np.ndarray, row: int) -> pa.Array:
    rows: list[Any] = x.tolist()
    rows[row] = None
    return pa.array(rows, type=FSL)


def with_null_value(x: np.ndarray, row: int) -> list[Any]:
    rows: list[Any] = x.tolist()
    rows[row][2] = None
    return rows


#: (a vector column holding a null, the row the error must name)
NULLS = {
    "arrow-null-vector": (with_null_vector(X, 4), 4),
    "arrow-null-value": (pa.array(with_null_value(X, 6), type=pa.list_(pa.float32())), 6),
    "arrow-chunked-null-value": (
        pa.chunked_array([fixed_size_list(X[:50]), pa.array(with_null_value(X[50:], 3), FSL)]),
        53,
    ),
    "pandas-none": (pd.Series([*X[:2].tolist(), None, *X[3:].tolist()]), 2),
    "polars-null-value": (pl.Series(with_null_value(X, 5), dtype=pl.Array(pl.Float32, DIM)), 5),
}


@pytest.mark.parametrize("kind", NULLS)
def test_nulls_are_refused_naming_the_row(db: quiver.Database, kind: str) -> None:
    column, row = NULLS[kind]
    with pytest.raises(quiver.InvalidInputError, match=rf"\brow {row}\b"):
        quiver.Index(DIM).add(column)
    coll = db.create_collection("nulls-" + kind, DIM)
    with pytest.raises(quiver.InvalidInputError, match=rf"\brow {row}\b"):
        coll.upsert(list(range(N)), column)
    assert coll.count() == 0


def test_uneven_list_rows_and_null_ids_are_refused(db: quiver.Database) -> None:
    uneven = pa.array([[1.0] * DIM, [1.0] * (DIM - 1)])
    with pytest.raises(quiver.InvalidInputError, match="row 1 has 7 values"):
        quiver.Index(DIM).add(uneven)
    coll = db.create_collection("null-ids", DIM)
    for ids in (pa.array([1, None, 3]), pd.Series([1, None, 3]), pl.Series([1, None, 3])):
        with pytest.raises(quiver.InvalidInputError, match=r"ids\[1\]"):
            coll.upsert(ids, X[:3])
        with pytest.raises(quiver.InvalidInputError, match=r"ids\[1\]"):
            quiver.Index(DIM).add(X[:3], ids=ids)
    assert coll.count() == 0


def test_no_data_frame_library_is_imported_by_quiver(tmp_path: Path) -> None:
    code = (
        "import sys, quiver, quiver.client\n"
        "quiver.Index(4).add([[1.0, 2.0, 3.0, 4.0]])\n"
        "print(sorted({'pandas', 'polars'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
