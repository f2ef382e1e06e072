"""The RAM-budget mode of the float segments: rerank rows read ahead with readahead advice.

Advice changes when pages are read, never what a search returns: every search here must give
exactly the results of the plain memory-mapped mode.
"""

from __future__ import annotations

import mmap

import numpy as np
import pytest

import quiver
from quiver.engine import readahead
from quiver.errors import InvalidInputError

DIM = 100  # not a multiple of 64, rows of 400 bytes: some straddle a page boundary


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    index = quiver.Index(DIM, "cosine", num_threads=2)
    index.add(x)
    path = tmp_path_factory.mktemp("readahead") / "index"
    index.save(path)
    queries = rng.standard_normal((150, DIM)).astype(np.float32)
    return path, x, queries


def _same(a: quiver.SearchResult, b: quiver.SearchResult) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


@pytest.mark.parametrize("threads", [1, 2])
def test_advised_mode_returns_exactly_the_mapped_results(saved, threads: int) -> None:
    path, _, queries = saved
    mapped = quiver.Index.open(path, float_access="mapped")
    advised = quiver.Index.open(path, float_access="advised")
    assert not mapped.reads_ahead and advised.reads_ahead
    assert advised.state().advised_views and not mapped.state().advised_views
    for ef in (10, 40, 130):  # more queries than one read-ahead group
        _same(
            mapped.search(queries, k=10, ef=ef, num_threads=threads),
            advised.search(queries, k=10, ef=ef, num_threads=threads),
        )
    # n < k: fewer candidates than results, padded alike
    _same(mapped.search(queries[:3], k=5, ef=5), advised.search(queries[:3], k=5, ef=5))


def test_advised_mode_after_writes_deletes_and_a_save(saved, tmp_path) -> None:
    path, x, queries = saved
    mapped = quiver.Index.open(path, float_access="mapped")
    advised = quiver.Index.open(path, float_access="advised")
    extra = np.random.default_rng(8).standard_normal((200, DIM)).astype(np.float32)
    for index in (mapped, advised):
        index.add(extra)  # an in-memory tail after the file segment
        index.delete(np.arange(0, 3000, 7))  # tombstones: the filtered kernel path
    _same(mapped.search(queries, k=10, ef=40), advised.search(queries, k=10, ef=40))
    advised.save(tmp_path / "again")  # the tail becomes a second file segment
    assert advised.reads_ahead and len(advised.state().advised_views) == 2
    _same(mapped.search(queries, k=10, ef=40), advised.search(queries, k=10, ef=40))


def test_float_access_is_validated_and_switchable(saved) -> None:
    path, _, queries = saved
    with pytest.raises(InvalidInputError, match="float_access must be one of .* got 'disk'"):
        quiver.Index.open(path, float_access="disk")
    index = quiver.Index.open(path, float_access="mapped")
    with pytest.raises(InvalidInputError, match="got 'fast'"):
        index.set_float_access("fast")
    assert index.float_access == "mapped" and not index.reads_ahead
    before = index.search(queries, k=10, ef=30)
    index.set_float_access("advised")
    assert index.reads_ahead
    _same(before, index.search(queries, k=10, ef=30))
    index.set_float_access("mapped")
    assert not index.reads_ahead


def test_in_memory_index_never_reads_ahead() -> None:
    index = quiver.Index(DIM, num_threads=1)
    index.add(np.random.default_rng(1).standard_normal((50, DIM)).astype(np.float32))
    index.set_float_access("advised")  # nothing on disk: nothing to advise
    assert not index.reads_ahead


def test_auto_mode_follows_the_memory_available(saved, monkeypatch) -> None:
    path, _, _ = saved
    file_bytes = 3000 * DIM * 4
    monkeypatch.setattr(readahead, "memory_available", lambda: 100 * file_bytes)
    assert not quiver.Index.open(path).reads_ahead
    monkeypatch.setattr(readahead, "memory_available", lambda: file_bytes)
    assert quiver.Index.open(path).reads_ahead == readahead.supported()


def test_row_pages_cover_every_byte_of_the_rows() -> None:
    page = mmap.PAGESIZE
    buffer = mmap.mmap(-1, 64 * page)
    # 400-byte rows
    view = np.frombuffer(buffer, dtype=np.float32, count=655 * DIM).reshape(-1, DIM)
    rows = np.array([0, 10, 10, -1, 40, view.shape[0] - 1, view.shape[0] + 5])
    pages = readahead.row_pages([view], [0], rows)
    assert np.all(np.diff(pages) > 0) and np.all(pages % page == 0)
    base = view.ctypes.data
    for row in (0, 10, 40, view.shape[0] - 1):
        first = (base + row * 400) // page * page
        last = (base + row * 400 + 399) // page * page
        assert first in pages and last in pages
    straddling = [r for r in range(view.shape[0]) if (r * 400) // page != (r * 400 + 399) // page]
    assert straddling and len(readahead.row_pages([view], [0], straddling[:1])) == 2
    # rows of a second segment are numbered from its first row
    assert np.array_equal(
        readahead.row_pages([view], [1000], np.array([1000])), readahead.row_pages([view], [0], [0])
    )
    assert readahead.row_pages([view], [0], np.array([-1])).size == 0
    if readahead.supported():
        assert readahead.will_need([view], [0], rows) == pages.size


def test_cgroup_folder_is_found_from_the_tail_of_its_path(tmp_path) -> None:
    (tmp_path / "budget").mkdir()
    (tmp_path / "budget" / "memory.max").write_text("1000\n")
    found = readahead._cgroup_dir(tmp_path, "/outer/container/budget", "memory.max")
    assert found == tmp_path / "budget"
    assert readahead._cgroup_dir(tmp_path, "/other", "memory.max") is None
