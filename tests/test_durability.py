"""Crash safety, damaged files, snapshots under load and concurrent readers beside a writer."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from bench.measure import crash_test

ROOT = Path(__file__).resolve().parent.parent
DIM = 32
#: Reads during a continuous write load keep at least this share of idle QPS in the test (the
#: script bench/measure/concurrency.py measures the real ratio on a quiet machine; CI is
#: noisy).
MIN_QPS_RATIO_UNDER_WRITES = 0.25


def _write_then_vanish(db_dir: Path, batches: int) -> None:
    """In a subprocess: upsert ``batches`` batches of 10, then exit without closing (a crash
    after the last acknowledgement: nothing checkpointed since the log was written)."""
    code = f"""
import os, numpy as np, quiver
db = quiver.Database({str(db_dir)!r}, checkpoint_bytes=1 << 30)
try:
    c = db.get_collection("t")
except quiver.CollectionNotFoundError:
    c = db.create_collection("t", {DIM})
rng = np.random.default_rng(0)
for b in range({batches}):
    c.upsert(list(range(b * 10, b * 10 + 10)), rng.standard_normal((10, {DIM})),
             [{{"b": b}}] * 10)
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _log_file(db_dir: Path) -> Path:
    (log,) = sorted((db_dir / "collections" / "t" / "wal").glob("wal-*.log"))
    return log


def test_replay_after_crash_and_torn_tail(tmp_path, caplog) -> None:
    db_dir = tmp_path / "db"
    _write_then_vanish(db_dir, 5)
    log = _log_file(db_dir)
    with quiver.Database(db_dir) as db:
        assert db.get_collection("t").count() == 50  # all replayed from the log
    _write_then_vanish(db_dir, 5)  # same ids again: upserts
    log = _log_file(db_dir)
    size = log.stat().st_size
    with open(log, "r+b") as fh:
        fh.truncate(size - 7)  # the last record is cut off mid-body
    with caplog.at_level(logging.WARNING), quiver.Database(db_dir) as db:
        c = db.get_collection("t")
        assert c.count() == 50
        assert "torn record" in caplog.text
    with quiver.Database(db_dir) as db:  # and the repaired state persists
        assert db.get_collection("t").count() == 50


def test_corrupt_log_record_before_valid_ones_is_an_error(tmp_path) -> None:
    db_dir = tmp_path / "db"
    _write_then_vanish(db_dir, 4)
    log = _log_file(db_dir)
    data = bytearray(log.read_bytes())
    data[40] ^= 0xFF  # inside the first record's body
    log.write_bytes(bytes(data))
    with pytest.raises(quiver.CorruptIndexError, match="later records exist"):
        quiver.Database(db_dir)
    # the lock was released: a repaired directory can be opened by the next process
    log.write_bytes(bytes(data[:0]))
    quiver.Database(db_dir).close()


@pytest.mark.parametrize("victim", ["vectors", "codes", "points", "manifest.json"])
def test_damaged_files_give_a_clear_error(tmp_path, victim) -> None:
    db_dir = tmp_path / "db"
    with quiver.Database(db_dir) as db:
        c = db.create_collection("t", DIM)
        c.upsert(list(range(200)), low_rank_data(200, DIM), [{"i": i} for i in range(200)])
    directory = db_dir / "collections" / "t"
    (path,) = [p for p in directory.iterdir() if p.name.startswith(victim)]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55  # one flipped byte: no crash, no silent wrong answer
    path.write_bytes(bytes(data))
    with pytest.raises(quiver.CorruptIndexError):
        quiver.Database(db_dir)
    path.write_bytes(bytes(data[: len(data) // 3]))  # cut short
    with pytest.raises(quiver.CorruptIndexError):
        quiver.Database(db_dir)


@pytest.mark.slow
def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path) -> None:
    """The reduced crash test (the full one: python -m bench.measure.crash_test --trials 100)."""
    rng = np.random.default_rng(0)
    model = crash_test.Model()
    for _ in range(3):
        record = crash_test.trial(tmp_path / "db", model, rng)
        assert not record["failures"], record
    assert model.present  # something was acknowledged and checked


def test_snapshot_during_writes_is_a_consistent_prefix(tmp_path) -> None:
    x = low_rank_data(3000, DIM, seed=3)
    acked: list[int] = []
    stop = threading.Event()
    with quiver.Database(tmp_path / "db") as db:
        c = db.create_collection("src", DIM)
        c.upsert(list(range(500)), x[:500])

        def writer() -> None:
            b = 5
            while not stop.is_set() and b < 30:
                c.upsert(list(range(b * 100, b * 100 + 100)), x[b * 100 : b * 100 + 100])
                acked.append(b)
                b += 1

        thread = threading.Thread(target=writer)
        thread.start()
        while len(acked) < 3:
            time.sleep(0.01)
        before = list(acked)
        file = c.snapshot(tmp_path / "snap.tar")
        stop.set()
        thread.join()
        restored = db.restore_snapshot(file, "copy")
        ids = {p.id for p in restored.scroll(limit=10_000, with_payload=False)[0]}
        batches = sorted({i // 100 for i in ids if i >= 500})
        assert set(range(500)) <= ids
        assert set(before) <= set(batches)  # everything acknowledged before the snapshot
        assert batches == list(range(5, 5 + len(batches)))  # then a prefix of the rest
        assert all(set(range(b * 100, b * 100 + 100)) <= ids for b in batches)  # whole batches
        assert len(ids) == 500 + 100 * len(batches)
        hits = restored.search(x[0], k=5)
        assert hits[0].id == 0


def test_readers_beside_a_writer(tmp_path) -> None:
    n, readers, seconds = 4000, 4, 2.0
    x = low_rank_data(n + 4000, DIM, seed=5)
    queries = x[:64]
    written = set(range(n))
    errors: list[BaseException] = []
    with quiver.Database(tmp_path / "db", num_threads=1) as db:
        c = db.create_collection("live", DIM)
        c.upsert(list(range(n)), x[:n], [{"v": i} for i in range(n)])

        def read(stop: threading.Event, counter: list[int]) -> None:
            try:
                while not stop.is_set():
                    for hits in c.search_batch(queries[:8], k=10, with_payload=True):
                        assert len(hits) == 10
                        for h in hits:
                            assert h.id in written and h.payload["v"] == h.id
                    counter[0] += 8
            except BaseException as exc:  # reported below
                errors.append(exc)

        def measure(write: bool) -> float:
            stop, counts = threading.Event(), [[0] for _ in range(readers)]
            threads = [threading.Thread(target=read, args=(stop, k)) for k in counts]
            for t in threads:
                t.start()
            t0 = time.perf_counter()
            i = n
            while time.perf_counter() - t0 < seconds:
                if write:
                    ids = list(range(i, i + 50))
                    written.update(ids)
                    c.upsert(ids, x[np.array(ids) % len(x)], [{"v": j} for j in ids])
                    c.delete(list(range(i - n, i - n + 25)))
                    i += 50
                else:
                    time.sleep(0.01)
            stop.set()
            for t in threads:
                t.join()
            return sum(k[0] for k in counts) / (time.perf_counter() - t0)

        idle = measure(write=False)
        busy = measure(write=True)
        print(f"search QPS idle {idle:.0f}, during writes {busy:.0f} ({busy / idle:.2f}x)")
        assert not errors, errors[0]
        assert busy >= MIN_QPS_RATIO_UNDER_WRITES * idle
