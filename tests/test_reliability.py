"""Regression tests of the storage half of the reliability issue: failed log appends, a failed
checkpoint after a logged write, untrusted index files, sealed manifests and configs, a lost
manifest, crashes during create and restore, scroll order, per-k calibration, read-only
opens and a lost log. Each failed on the code before its fix."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from bench.measure.fuzz_snapshots import reseal
from quiver import CorruptIndexError
from quiver.db import wal
from quiver.engine import store

DIM = 16


def points(n: int, seed: int = 0) -> np.ndarray:
    return low_rank_data(n, DIM, seed=seed).astype(np.float32)


def crash_copy(db_dir: Path, to: Path) -> Path:
    """The data directory as a crash at this moment would leave it (nothing in flight)."""
    shutil.copytree(db_dir, to)
    return to


def ids_in(db_dir: Path, name: str = "c") -> set[int]:
    with quiver.Database(db_dir) as db:
        c = db.get_collection(name)
        return {p.id for p in c.scroll(limit=100_000, with_payload=False)[0]}


# ----------------------------------------------------------------------------- 1: log append
def test_a_failed_fsync_is_rolled_back_and_the_log_reopens(tmp_path, monkeypatch) -> None:
    db = quiver.Database(tmp_path / "db")
    c = db.create_collection("c", DIM)
    x = points(30)
    c.upsert(list(range(10)), x[:10])

    real_fsync, failures = os.fsync, []

    def fsync_failing_once(fd: int) -> None:
        if not failures:
            failures.append(fd)
            raise OSError(errno.EIO, "injected fsync failure")
        real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(wal.os, "fsync", fsync_failing_once)
        with pytest.raises(OSError, match="injected"):
            c.upsert(list(range(10, 20)), x[10:20])
    c.upsert(list(range(20, 30)), x[20:30])  # the next write gets the unused lsn
    assert c.count() == 20
    copy = crash_copy(tmp_path / "db", tmp_path / "crashed")
    db.close()
    assert ids_in(copy) == set(range(10)) | set(range(20, 30))


def test_a_log_that_cannot_roll_back_refuses_writes_until_repaired(tmp_path, monkeypatch) -> None:
    db = quiver.Database(tmp_path / "db")
    c = db.create_collection("c", DIM)
    x = points(30)
    c.upsert(list(range(10)), x[:10])

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected fsync failure")

    with monkeypatch.context() as m:
        m.setattr(wal.os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="injected"):
            c.upsert(list(range(10, 20)), x[10:20])
        with pytest.raises(wal.LogWriteError, match="refuses writes"):
            c.upsert(list(range(20, 30)), x[20:30])
    c.upsert(list(range(20, 30)), x[20:30])  # the device recovered: repaired, acknowledged
    copy = crash_copy(tmp_path / "db", tmp_path / "crashed")
    db.close()
    assert ids_in(copy) == set(range(10)) | set(range(20, 30))


@pytest.fixture()
def full_disk(tmp_path):
    """A 3 MiB tmpfs (needs root); yields (mount point, filler path)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int) -> Path:
    """Fill the file system but ``leave`` bytes."""
    filler = mnt / "filler"
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))
    return filler


def test_a_full_disk_rolls_the_log_back_embedded(full_disk, tmp_path) -> None:
    db = quiver.Database(full_disk / "db", checkpoint_bytes=1 << 30)
    c = db.create_collection("c", DIM)
    x = points(400, seed=1)
    filler = fill(full_disk, 40_000)
    acked, failed, b = set(), 0, 0
    while failed == 0 and b < 40:
        ids = list(range(b * 10, b * 10 + 10))
        try:
            c.upsert(ids, x[b * 10 : b * 10 + 10], [{"pad": "x" * 300}] * 10)
            acked |= set(ids)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            failed += 1
        b += 1
    assert failed == 1, "the disk never filled up"
    filler.unlink()
    c.upsert([9999], x[:1])
    acked.add(9999)
    copy = crash_copy(full_disk / "db", tmp_path / "crashed")
    db.close()
    assert ids_in(copy) == acked


def test_a_full_disk_rolls_the_log_back_through_the_server(full_disk, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from quiver.server import Settings, create_app

    settings = Settings(
        db_dir=full_disk / "db", snapshot_dir=tmp_path / "snaps", access_log=False, threads=1
    )
    x = points(400, seed=2)
    acked = set()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        assert client.put("/collections/c", json={"dim": DIM}).status_code == 200
        filler = fill(full_disk, 40_000)
        statuses = []
        for b in range(40):
            body = [
                {"id": i, "vector": x[i % 400].tolist(), "payload": {"pad": "x" * 300}}
                for i in range(b * 10, b * 10 + 10)
            ]
            r = client.put("/collections/c/points", json={"points": body})
            statuses.append(r.status_code)
            if r.status_code == 200:
                acked |= {p["id"] for p in body}
            else:
                break
        assert statuses[-1] != 200, "the disk never filled up"
        assert statuses[-1] == 507 and r.json()["error"] == "insufficient_storage", r.text
        assert "/" not in r.json()["message"], "no server path in the answer"
        filler.unlink()
        r = client.put(
            "/collections/c/points", json={"points": [{"id": 9999, "vector": x[0].tolist()}]}
        )
        assert r.status_code == 200, r.text
        acked.add(9999)
        copy = crash_copy(full_disk / "db", tmp_path / "crashed")
    assert ids_in(copy) == acked


# ----------------------------------------------------------------------------- 13: checkpoint
def test_a_failed_checkpoint_does_not_fail_the_write(tmp_path, monkeypatch) -> None:
    db = quiver.Database(tmp_path / "db", checkpoint_bytes=1)  # every write checkpoints
    c = db.create_collection("c", DIM)
    x = points(20)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "injected: no space left")

    with monkeypatch.context() as m:
        m.setattr("quiver.db.collection.write_points", disk_full)
        assert c.upsert(list(range(10)), x[:10]) == 10  # acknowledged: it is in the log
    info = c.info()
    assert info["checkpoint_failures"] == 1 and "no space" in info["last_checkpoint_error"]
    c.upsert(list(range(10, 20)), x[10:20])  # the next checkpoint works
    copy = crash_copy(tmp_path / "db", tmp_path / "crashed")
    db.close()
    assert ids_in(copy) == set(range(20))


# ----------------------------------------------------------------------------- 2, 3: files
def saved_index(directory: Path) -> Path:
    index = quiver.Index(DIM, max_degree=8, build_list_size=16)
    index.add(points(200))
    index.delete([3, 4])
    index.save(directory)
    return directory


def rewrite_array(directory: Path, key: str, change) -> None:
    manifest = store.read_manifest(directory)
    path = directory / manifest["files"][key]
    arr = np.load(path)
    arr = change(arr)
    np.save(path, arr)
    reseal(directory)


def rewrite_manifest(directory: Path, **fields) -> None:
    manifest = store.read_manifest(directory)
    manifest.update(fields)
    store.write_manifest(directory, manifest)


def _set(arr: np.ndarray, index, value) -> np.ndarray:
    arr[index] = value
    return arr


def _edge(value: int):
    return lambda d: rewrite_array(d, "adjacency", lambda a: _set(a, (7, 0), value))


CRAFTED = {
    "entry point past the end": lambda d: rewrite_manifest(d, entry_point=10**6),
    "negative entry point": lambda d: rewrite_manifest(d, entry_point=-5),
    "adjacency id past the end": _edge(10**6),
    "adjacency -1 inside the degree": _edge(-1),
    "degree above max degree": lambda d: rewrite_array(d, "degrees", lambda a: _set(a, 5, 9)),
    "negative degree": lambda d: rewrite_array(d, "degrees", lambda a: _set(a, 5, -3)),
    "duplicate labels": lambda d: rewrite_array(d, "labels", lambda a: _set(a, 1, a[0])),
    "label beyond next_id": lambda d: rewrite_array(d, "labels", lambda a: _set(a, 1, 10**9)),
    "live flag 2": lambda d: rewrite_array(d, "live", lambda a: _set(a, 1, 2)),
    "codes one row short": lambda d: rewrite_array(d, "codes", lambda a: a[:-1]),
    "adjacency as int64": lambda d: rewrite_array(d, "adjacency", lambda a: a.astype(np.int64)),
    "count above the rows": lambda d: rewrite_manifest(d, count=201),
    "segment outside the directory": lambda d: rewrite_manifest(
        d, segments=[{"file": "../x.arrow", "rows": 200}]
    ),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(CRAFTED))
def test_crafted_index_files_are_rejected_before_any_search(tmp_path, damage) -> None:
    directory = saved_index(tmp_path / "i")
    CRAFTED[damage](directory)
    with pytest.raises(CorruptIndexError, match="corrupt index|must be|outside|disagrees"):
        quiver.Index.open(directory)


def test_a_crafted_snapshot_is_rejected_and_nothing_is_restored(tmp_path) -> None:
    with quiver.Database(tmp_path / "db") as db:
        c = db.create_collection("c", DIM, max_degree=8)
        c.upsert(list(range(100)), points(100))
        snap = c.snapshot(tmp_path / "c.tar")
        unpacked = tmp_path / "unpacked"
        shutil.unpack_archive(snap, unpacked, format="tar")
        rewrite_manifest(unpacked, entry_point=10**6)  # resealed: only structure can tell
        crafted = shutil.make_archive(str(tmp_path / "crafted"), "tar", unpacked)
        with pytest.raises(CorruptIndexError, match="entry_point"):
            db.restore_snapshot(crafted, "evil")
        assert "evil" not in db.list_collections()
        assert sorted(p.name for p in (tmp_path / "db" / "collections").iterdir()) == ["c"]


def test_points_with_duplicate_live_ids_are_rejected(tmp_path) -> None:
    with quiver.Database(tmp_path / "db") as db:
        db.create_collection("c", DIM).upsert(list(range(50)), points(50))
    directory = tmp_path / "db" / "collections" / "c"
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = store.read_manifest(directory)["files"]["points"]
    table = pq.read_table(directory / name)
    ids = table.column("id").to_pylist()
    ids[1] = ids[0]
    pq.write_table(table.set_column(0, "id", pa.array(ids, type=pa.uint64())), directory / name)
    reseal(directory)
    with pytest.raises(CorruptIndexError, match="share an id"):
        quiver.Database(tmp_path / "db")


def test_an_edited_manifest_or_config_fails_its_checksum(tmp_path) -> None:
    with quiver.Database(tmp_path / "db") as db:
        db.create_collection("c", DIM).upsert(list(range(50)), points(50))
    directory = tmp_path / "db" / "collections" / "c"
    manifest = json.loads((directory / "manifest.json").read_text())
    good = manifest["entry_point"]
    manifest["entry_point"] = (good + 1) % 50  # still in range: only the checksum tells
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndexError, match="manifest.json: checksum mismatch"):
        quiver.Database(tmp_path / "db")
    manifest["entry_point"] = good
    (directory / "manifest.json").write_text(json.dumps(manifest))
    config = json.loads((directory / "collection.json").read_text())
    config["metric"] = "l2"
    (directory / "collection.json").write_text(json.dumps(config))
    with pytest.raises(CorruptIndexError, match="collection.json: checksum mismatch"):
        quiver.Database(tmp_path / "db")


def test_a_manifest_without_checksum_is_read_with_a_warning(tmp_path, caplog) -> None:
    directory = saved_index(tmp_path / "i")
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest[store.MANIFEST_CRC]  # as an older quiver wrote it
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert len(quiver.Index.open(directory)) == 198
    assert "not verified" in caplog.text


# ----------------------------------------------------------------------------- 4: manifest lost
def test_a_missing_manifest_is_an_error_and_deletes_nothing(tmp_path) -> None:
    with quiver.Database(tmp_path / "db") as db:
        db.create_collection("c", DIM).upsert(list(range(50)), points(50))
    directory = tmp_path / "db" / "collections" / "c"
    (directory / "manifest.json").unlink()
    before = sorted(p.name for p in directory.rglob("*"))
    with pytest.raises(CorruptIndexError, match="manifest.json is missing but data files"):
        quiver.Database(tmp_path / "db")
    assert sorted(p.name for p in directory.rglob("*")) == before


# ----------------------------------------------------------------------------- 5: create
def test_a_half_created_collection_leaves_no_stuck_name(tmp_path) -> None:
    root = tmp_path / "db" / "collections"
    root.mkdir(parents=True)
    (root / "a").mkdir()  # what a crash right after mkdir left (older quiver)
    (root / "b").mkdir()
    (root / "b" / "collection.json.tmp").write_text("{")
    (root / ".create-c-0123abcd").mkdir()  # an unfinished atomic create
    with quiver.Database(tmp_path / "db") as db:
        assert db.list_collections() == []
        for name in ("a", "b", "c"):
            db.create_collection(name, DIM)
        assert db.list_collections() == ["a", "b", "c"]
    assert sorted(p.name for p in root.iterdir()) == ["a", "b", "c"]


def test_a_failed_create_leaves_nothing(tmp_path, monkeypatch) -> None:
    def fail(self, **kwargs):
        raise OSError(errno.ENOSPC, "injected")

    with quiver.Database(tmp_path / "db") as db:
        with monkeypatch.context() as m:
            m.setattr(quiver.Collection, "checkpoint", fail)
            with pytest.raises(OSError, match="injected"):
                db.create_collection("x", DIM)
        assert list((tmp_path / "db" / "collections").iterdir()) == []
        db.create_collection("x", DIM)  # the name is free


# ----------------------------------------------------------------------------- 6: scroll
def test_scroll_continues_after_the_boundary_point_is_deleted_or_reupserted(tmp_path) -> None:
    with quiver.Database(tmp_path / "db") as db:
        c = db.create_collection("c", DIM)
        x = points(300)
        ids = list(range(300))
        rng = np.random.default_rng(0)
        rng.shuffle(ids)  # stored out of id order
        c.upsert(ids, x)
        page, nxt = c.scroll(limit=100, with_payload=False)
        assert [p.id for p in page] == list(range(100)) and nxt == 100
        c.upsert([100], x[:1])  # re-upsert the boundary point: it moves in storage
        page, nxt = c.scroll(limit=100, offset=nxt, with_payload=False)
        assert [p.id for p in page] == list(range(100, 200)) and nxt == 200
        c.delete([200])  # delete the next boundary point: the offset still works
        page, nxt = c.scroll(limit=100, offset=nxt, with_payload=False)
        assert [p.id for p in page] == list(range(201, 300)) and nxt is None


# ----------------------------------------------------------------------------- 14: restore swap
SWAP_CRASH = """
import os, sys
import numpy as np
import quiver
import quiver.db.database as database

db = quiver.Database(sys.argv[1])
calls = []
real = os.replace

def crash_at(src, dst):
    if os.path.basename(os.path.dirname(dst)) == "collections":  # the swap's own renames
        calls.append(src)
    if len(calls) == int(sys.argv[3]):
        os._exit(3)  # a crash before this rename of the swap
    real(src, dst)

database.os.replace = crash_at  # the os module: every rename in the process
db.restore_snapshot(sys.argv[2], "c", replace=True)
"""


@pytest.mark.parametrize(
    ("crash_at", "expected"),
    [(2, set(range(60))), (3, set(range(40)))],
    ids=["before-the-first-rename-rolls-back", "between-the-renames-finishes"],
)
def test_a_crash_during_the_swap_is_finished_or_rolled_back_on_open(
    tmp_path, crash_at, expected
) -> None:
    with quiver.Database(tmp_path / "db") as db:
        c = db.create_collection("c", DIM)
        c.upsert(list(range(40)), points(40))
        snap = c.snapshot(tmp_path / "c.tar")
        c.upsert(list(range(40, 60)), points(20, seed=1))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SWAP_CRASH),
            str(tmp_path / "db"),
            str(snap),
            str(crash_at),
        ],
        check=False,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 3
    assert ids_in(tmp_path / "db") == expected  # the old one, or the verified snapshot
    assert [p.name for p in (tmp_path / "db" / "collections").iterdir()] == ["c"]


# ----------------------------------------------------------------------------- 9: calibration
def test_calibrations_are_kept_per_k(monkeypatch) -> None:
    import quiver.index as index_module

    made = []
    real = index_module.calibrate

    def counting(index, k, **kwargs):
        made.append(k)
        return real(index, k=k, queries=20)

    monkeypatch.setattr(index_module, "calibrate", counting)
    index = quiver.Index(DIM, num_threads=1)
    index.add(points(600))
    for k in (5, 10, 5, 10, 5):
        index.ef_for_recall(0.9, k=k)
    assert made == [5, 10]
    assert index.stats()["calibrated_k"] == [5, 10]


# ----------------------------------------------------------------------------- hardening
def test_read_only_open_beside_a_writer(tmp_path) -> None:
    writer = quiver.Database(tmp_path / "db")
    c = writer.create_collection("c", DIM)
    c.upsert(list(range(30)), points(30))
    snapshot = {p: p.stat().st_mtime_ns for p in (tmp_path / "db").rglob("*")}
    reader = quiver.Database(tmp_path / "db", read_only=True)  # no lock conflict
    try:
        rc = reader.get_collection("c")
        assert rc.count() == 30 and rc.info()["read_only"]
        assert len(rc.search(points(1)[0], k=3)) == 3
        with pytest.raises(quiver.errors.ReadOnlyError):
            rc.upsert([99], points(1))
        with pytest.raises(quiver.errors.ReadOnlyError):
            reader.create_collection("d", DIM)
        with pytest.raises(quiver.errors.ReadOnlyError):
            rc.checkpoint()
    finally:
        reader.close()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "db").rglob("*")} == snapshot
    writer.close()
    with pytest.raises(quiver.CollectionNotFoundError):
        quiver.Database(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_a_deleted_log_is_reported(tmp_path, caplog) -> None:
    db = quiver.Database(tmp_path / "db")
    c = db.create_collection("c", DIM)
    c.upsert(list(range(10)), points(10))
    c.checkpoint()
    c.upsert(list(range(10, 20)), points(10, seed=1))  # only in the log
    copy = crash_copy(tmp_path / "db", tmp_path / "crashed")
    db.close()
    shutil.rmtree(copy / "collections" / "c" / "wal")
    with caplog.at_level(logging.ERROR), quiver.Database(copy) as db2:
        info = db2.get_collection("c").info()
        assert info["status"] == "degraded" and "log is gone" in info["log_damage"]
        assert db2.get_collection("c").count() == 10
    assert "log is gone" in caplog.text
    with quiver.Database(copy) as db3:  # re-based: opens cleanly, the damage was reported
        assert db3.get_collection("c").info()["status"] == "green"


def test_a_truncated_log_is_reported(tmp_path) -> None:
    db = quiver.Database(tmp_path / "db")
    c = db.create_collection("c", DIM)
    c.upsert(list(range(10)), points(10))
    c.checkpoint()
    c.upsert(list(range(10, 20)), points(10, seed=1))
    copy = crash_copy(tmp_path / "db", tmp_path / "crashed")
    db.close()
    (log,) = (copy / "collections" / "c" / "wal").glob("wal-*.log")
    log.rename(log.with_name("wal-00000000000000000009.log"))  # records 3.. gone
    log.with_name("wal-00000000000000000009.log").write_bytes(b"")
    with quiver.Database(copy) as db2:
        assert "are missing" in db2.get_collection("c").info()["log_damage"]


def test_writes_wait_for_the_checkpoint_that_rebases_a_damaged_log(tmp_path, monkeypatch) -> None:
    db = quiver.Database(tmp_path / "db")
    c = db.create_collection("c", DIM)
    c.upsert(list(range(10)), points(10))
    c.checkpoint()
    c.upsert(list(range(10, 20)), points(10, seed=1))
    copy = crash_copy(tmp_path / "db", tmp_path / "crashed")
    db.close()
    shutil.rmtree(copy / "collections" / "c" / "wal")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "injected: no space left")

    with monkeypatch.context() as m:
        m.setattr("quiver.db.collection.write_points", disk_full)
        db2 = quiver.Database(copy)  # opens; the re-basing checkpoint failed
        c2 = db2.get_collection("c")
        assert c2.info()["checkpoint_failures"] == 1
        with pytest.raises(OSError, match="no space"):
            c2.upsert([50], points(1))  # refused: the log is not re-based yet
    c2.upsert([50], points(1))  # the checkpoint works now, then the write
    db2.close()
    assert ids_in(copy) == set(range(10)) | {50}


# ----------------------------------------------------------------------------- one damaged
def damage_codes(db_dir: Path, name: str) -> None:
    """Flip a byte in the middle of a collection's codes file (its CRC-32 then fails)."""
    (codes,) = (db_dir / "collections" / name).glob("codes-g*.npy")
    data = bytearray(codes.read_bytes())
    data[len(data) // 2] ^= 0x55
    codes.write_bytes(bytes(data))


def test_one_damaged_collection_is_isolated_when_asked(tmp_path) -> None:
    db_dir = tmp_path / "db"
    with quiver.Database(db_dir) as db:
        for name in ("good", "bad"):
            db.create_collection(name, DIM).upsert(list(range(50)), points(50))
    damage_codes(db_dir, "bad")
    with pytest.raises(CorruptIndexError):  # the default: the open fails as a whole
        quiver.Database(db_dir)
    with quiver.Database(db_dir, isolate_damaged=True) as db:
        assert db.list_collections() == ["bad", "good"]
        assert "checksum" in db.failed_collections()["bad"]
        assert db.get_collection("good").count() == 50
        with pytest.raises(CorruptIndexError, match="could not be opened"):
            db.get_collection("bad")
        with pytest.raises(quiver.CollectionExistsError):
            db.create_collection("bad", DIM)
        db.drop_collection("bad")  # the way out: nothing of it is left
        assert db.list_collections() == ["good"] and db.failed_collections() == {}
    assert sorted(p.name for p in (db_dir / "collections").iterdir()) == ["good"]


def test_a_snapshot_restored_over_a_damaged_collection_heals_it(tmp_path) -> None:
    db_dir = tmp_path / "db"
    with quiver.Database(db_dir) as db:
        c = db.create_collection("c", DIM)
        c.upsert(list(range(40)), points(40))
        snap = c.snapshot(tmp_path / "c.snapshot")
    damage_codes(db_dir, "c")
    with quiver.Database(db_dir, isolate_damaged=True) as db:
        assert set(db.failed_collections()) == {"c"}
        assert db.restore_snapshot(snap, "c", replace=True).count() == 40
        assert db.failed_collections() == {}
