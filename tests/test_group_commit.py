"""Group commit: concurrent upserts share one log record; each caller still sees its own
outcome, the later write of an id wins, and a failed group writes nothing."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import pytest

import quiver
from quiver.db.group_commit import GroupCommit, PendingUpsert, take_group

DIM = 12  # not a multiple of 64


def _batch(ids: list[int], points: int | None = None) -> PendingUpsert:
    n = len(ids) if points is None else points
    return PendingUpsert(ids, np.zeros((n, DIM), np.float32), [None] * n)


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, DIM)).astype(np.float32)


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the writers to queue")
        time.sleep(0.002)


def test_take_group_stops_before_a_repeated_id_and_at_the_point_cap():
    queue = deque([_batch([1, 2]), _batch([3]), _batch([2, 4]), _batch([5])])
    assert [b.ids for b in take_group(queue, 100)] == [[1, 2], [3]]
    assert [b.ids for b in take_group(queue, 100)] == [[2, 4], [5]]
    assert not queue
    queue = deque([_batch([1, 2, 3]), _batch([4, 5]), _batch([6])])
    assert [b.ids for b in take_group(queue, 4)] == [[1, 2, 3]]
    assert [b.ids for b in take_group(queue, 4)] == [[4, 5], [6]]
    big = deque([_batch(list(range(10))), _batch([99])])
    assert len(take_group(big, 4)[0].ids) == 10  # one batch over the cap still goes alone


def _queued_writers(coll, calls: list[tuple]) -> tuple[list[threading.Thread], list]:
    """Start one thread per ``(ids, vectors)`` call while the test holds the write lock,
    in order, each queued before the next starts. Returns the threads and their outcomes."""
    outcomes: list = [None] * len(calls)

    def write(i: int, ids, vectors) -> None:
        try:
            outcomes[i] = coll.upsert(ids, vectors)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcomes[i] = exc

    threads = []
    for i, (ids, vectors) in enumerate(calls):
        th = threading.Thread(target=write, args=(i, ids, vectors))
        th.start()
        threads.append(th)
        # the first caller leads (it waits on the write lock); the others wait for it
        _wait_until(lambda i=i: coll._upserts.pending() == i + 1)
    return threads, outcomes


def test_concurrent_upserts_share_one_log_record(tmp_path):
    rng = np.random.default_rng(0)
    with quiver.Database(tmp_path / "db") as db:
        coll = db.create_collection("c", DIM, "cosine")
        coll.upsert([0], _vectors(rng, 1))
        lsn_before = coll._wal.next_lsn
        calls = [([10 * i + j for j in range(3)], _vectors(rng, 3)) for i in range(1, 6)]
        with coll._write_lock:  # a write in progress: the callers queue behind it
            threads, outcomes = _queued_writers(coll, calls)
        for th in threads:
            th.join(10)
        assert outcomes == [3] * 5
        assert coll._wal.next_lsn == lsn_before + 1  # one record for the five batches
        assert (coll._upserts.groups, coll._upserts.batches) == (2, 6)
        assert coll.count() == 16
        for ids, vectors in calls:
            got = coll.retrieve(ids, with_vector=True)
            np.testing.assert_allclose(
                np.stack([p.vector for p in got]),
                vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                atol=1e-6,
            )
    with quiver.Database(tmp_path / "db") as db:  # replayed from the log as one upsert
        assert db.get_collection("c").count() == 16


def test_the_later_write_of_an_id_wins(tmp_path):
    rng = np.random.default_rng(1)
    with quiver.Database(tmp_path / "db") as db:
        coll = db.create_collection("c", DIM, "euclidean")
        first, second, third = _vectors(rng, 2), _vectors(rng, 1), _vectors(rng, 1)
        with coll._write_lock:
            threads, outcomes = _queued_writers(
                coll, [([1, 2], first), ([2], second), ([3], third)]
            )
        for th in threads:
            th.join(10)
        assert outcomes == [2, 1, 1]
        got = {p.id: p.vector for p in coll.retrieve([1, 2, 3], with_vector=True)}
        np.testing.assert_allclose(got[1], first[0])
        np.testing.assert_allclose(got[2], second[0])  # queued after [1, 2]: it wins
        np.testing.assert_allclose(got[3], third[0])


def test_a_failed_group_commit_fails_every_caller_and_writes_nothing(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    with quiver.Database(tmp_path / "db") as db:
        coll = db.create_collection("c", DIM, "cosine")
        coll.upsert([0], _vectors(rng, 1))
        append = coll._wal.append

        def failing_append(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(coll._wal, "append", failing_append)
        calls = [([i], _vectors(rng, 1)) for i in range(1, 4)]
        with coll._write_lock:
            threads, outcomes = _queued_writers(coll, calls)
        for th in threads:
            th.join(10)
        assert all(isinstance(o, OSError) and o.errno == 28 for o in outcomes)
        assert coll.count() == 1
        monkeypatch.setattr(coll._wal, "append", append)
        assert coll.upsert([1], _vectors(rng, 1)) == 1  # the queue is not wedged
        assert coll.count() == 2


def test_a_bad_batch_fails_alone(tmp_path):
    rng = np.random.default_rng(3)
    with quiver.Database(tmp_path / "db") as db:
        coll = db.create_collection("c", DIM, "cosine")
        with coll._write_lock:
            threads, outcomes = _queued_writers(coll, [([1], _vectors(rng, 1))])
            with pytest.raises(quiver.InvalidInputError, match="dim"):
                coll.upsert([2], np.ones((1, DIM + 1), np.float32))
            bad = np.ones((1, DIM), np.float32)
            bad[0, 3] = np.nan
            with pytest.raises(quiver.InvalidInputError):
                coll.upsert([3], bad)
        for th in threads:
            th.join(10)
        assert outcomes == [1]
        assert coll.count() == 1


def test_many_threads_upserting_lose_nothing(tmp_path):
    rng = np.random.default_rng(4)
    vectors = _vectors(rng, 8 * 40)
    with quiver.Database(tmp_path / "db") as db:
        coll = db.create_collection("c", DIM, "cosine")

        def writer(t: int) -> None:
            for j in range(20):
                rows = [t * 40 + 2 * j, t * 40 + 2 * j + 1]
                coll.upsert(rows, vectors[rows])

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert coll.count() == 320
        assert coll._upserts.batches == 160
        hits = coll.search(vectors[17], k=1)
        assert hits[0].id == 17


def test_group_commit_unit_leader_commits_for_followers():
    lock = threading.RLock()
    committed: list[list[int]] = []
    commit = GroupCommit(lock, lambda ids, x, texts: committed.append(list(ids)))
    with lock:
        results: list = []
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(
                    commit.submit([i], np.zeros((1, DIM), np.float32), [None])
                )
            )
            for i in range(4)
        ]
        for i, th in enumerate(threads):
            th.start()
            _wait_until(lambda i=i: commit.pending() == i + 1)
    for th in threads:
        th.join(10)
    assert sorted(i for ids in committed for i in ids) == [0, 1, 2, 3]
    assert commit.batches == 4 and commit.groups == len(committed) <= 2
