"""Unit tests of the write-ahead log's framing, replay, torn-tail handling and rotation."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from quiver.db import wal
from quiver.db.wal import FRAME, OP_DELETE, OP_UPSERT, WriteAheadLog
from quiver.errors import CorruptIndexError, InvalidInputError

DIM = 4


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


# (op, header, vectors) of the three records every test writes first
WRITES = [
    (OP_UPSERT, {"ids": [1, "b"], "payloads": ['{"k":"é"}', None]}, vectors(2, 0)),
    (OP_DELETE, {"ids": ["b"]}, None),
    (OP_UPSERT, {"ids": [7], "payloads": [None]}, vectors(1, 1)),
]


def write_log(directory: Path) -> list[int]:
    """Write ``WRITES`` to a fresh log, close it, and return each record's end offset."""
    log = WriteAheadLog(directory, DIM)
    ends = []
    for op, header, x in WRITES:
        log.append(op, header, x)
        ends.append(log.bytes)
    log.close()
    return ends


def replay(directory: Path, after: int = 0) -> tuple[list[wal.Record], WriteAheadLog]:
    log = WriteAheadLog(directory, DIM)
    return list(log.replay(after)), log


def assert_records(records: list[wal.Record], lsns: list[int]) -> None:
    assert [r.lsn for r in records] == lsns
    for record in records:
        op, header, x = WRITES[record.lsn - 1]
        assert record.op == op and record.header == header
        if x is None:
            assert record.vectors is None
        else:
            assert record.vectors.dtype == np.float32
            assert np.array_equal(record.vectors, x)


def only_file(directory: Path) -> Path:
    (path,) = sorted(directory.glob("wal-*.log"))
    return path


def test_records_round_trip_across_a_reopen(tmp_path: Path) -> None:
    write_log(tmp_path)
    records, log = replay(tmp_path)
    assert_records(records, [1, 2, 3])
    assert log.next_lsn == 4


def test_lsns_are_consecutive_and_continue_after_a_reopen(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, DIM)
    assert [log.append(op, h, x) for op, h, x in WRITES] == [1, 2, 3]
    log.close()
    records, log = replay(tmp_path)
    assert log.append(OP_DELETE, {"ids": [1]}) == 4
    log.close()
    assert [r.lsn for r in replay(tmp_path)[0]] == [1, 2, 3, 4]


@pytest.mark.parametrize("after", [1, 2, 3, 10])
def test_replay_skips_records_up_to_the_given_lsn(tmp_path: Path, after: int) -> None:
    write_log(tmp_path)
    records, log = replay(tmp_path, after)
    assert_records(records, list(range(after + 1, 4)))
    assert log.next_lsn == max(after, 3) + 1


def test_an_empty_log_replays_nothing(tmp_path: Path) -> None:
    records, log = replay(tmp_path / "new")
    assert records == [] and log.next_lsn == 1 and log.files() == []
    assert log.append(OP_DELETE, {"ids": [3]}) == 1
    log.close()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "wal-00000000000000000001.log").write_bytes(b"")
    records, log = replay(tmp_path / "empty", after=5)
    assert records == [] and log.next_lsn == 6


def torn_offsets(ends: list[int]) -> list[int]:
    """Offsets inside the last record: in its frame header, at the body start, in its JSON
    header, in its vectors, one byte short of its end."""
    start = ends[1]
    return [start + 1, start + FRAME.size - 1, start + FRAME.size, start + 20, ends[2] - 1]


@pytest.mark.parametrize("where", range(5))
def test_a_torn_tail_is_cut_and_earlier_records_survive(
    tmp_path: Path, where: int, caplog: pytest.LogCaptureFixture
) -> None:
    ends = write_log(tmp_path)
    path = only_file(tmp_path)
    cut = torn_offsets(ends)[where]
    path.write_bytes(path.read_bytes()[:cut])
    with caplog.at_level(logging.WARNING, logger="quiver.db.wal"):
        records, log = replay(tmp_path)
    assert_records(records, [1, 2])
    assert path.stat().st_size == ends[1]
    assert "torn record" in caplog.text
    # the log continues after the last good record, and the result reads back
    assert log.append(*WRITES[2]) == 3
    log.close()
    assert_records(replay(tmp_path)[0], [1, 2, 3])


def flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def middle_offsets(ends: list[int]) -> dict[str, int]:
    start = ends[0]
    return {
        "length": start + 1,
        "crc": start + 5,
        "lsn": start + 8,
        "operation": start + FRAME.size,
        "json header": start + FRAME.size + 8,
        "last body byte": ends[1] - 1,
    }


@pytest.mark.parametrize("field", list(middle_offsets([0, 100])))
def test_a_bit_flip_in_a_middle_record_is_corruption(tmp_path: Path, field: str) -> None:
    ends = write_log(tmp_path)
    path = only_file(tmp_path)
    flip_bit(path, middle_offsets(ends)[field])
    damaged = path.read_bytes()
    with pytest.raises(CorruptIndexError, match=f"record at byte {ends[0]} is corrupt"):
        replay(tmp_path)
    assert path.read_bytes() == damaged  # nothing was cut away


def test_a_bit_flip_in_the_upsert_vectors_is_corruption(tmp_path: Path) -> None:
    ends = write_log(tmp_path)
    path = only_file(tmp_path)
    flip_bit(path, ends[0] - 1)  # last vector byte of record 1, followed by two records
    with pytest.raises(CorruptIndexError, match="record at byte 0 is corrupt"):
        replay(tmp_path)


def test_a_bit_flip_in_the_last_record_reads_as_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # documented: a bad last record cannot be told apart from an unfinished write
    ends = write_log(tmp_path)
    path = only_file(tmp_path)
    flip_bit(path, ends[2] - 1)
    with caplog.at_level(logging.WARNING, logger="quiver.db.wal"):
        assert_records(replay(tmp_path)[0], [1, 2])
    assert "checksum mismatch" in caplog.text
    assert path.stat().st_size == ends[1]


def frame(lsn: int, body: bytes) -> bytes:
    return FRAME.pack(len(body), zlib.crc32(struct.pack("<Q", lsn) + body), lsn) + body


@pytest.mark.parametrize(
    "body",
    [
        wal.BODY_HEAD.pack(OP_DELETE, 5) + b"{oops",  # not JSON
        wal.BODY_HEAD.pack(OP_DELETE, 2) + b"\xff\xfe",  # not UTF-8
        wal.BODY_HEAD.pack(OP_UPSERT, 2) + b"{}" + b"\0" * 6,  # 6 bytes: not whole vectors
    ],
    ids=["json", "utf8", "vectors"],
)
def test_a_checksummed_but_undecodable_record_is_corruption(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "wal-00000000000000000001.log").write_bytes(frame(1, body))
    with pytest.raises(CorruptIndexError, match="record 1 has a valid checksum"):
        replay(tmp_path)


def test_a_checksummed_record_too_short_for_its_head_is_corruption(tmp_path: Path) -> None:
    (tmp_path / "wal-00000000000000000001.log").write_bytes(frame(1, b"\x02"))
    with pytest.raises(CorruptIndexError):
        replay(tmp_path)


def test_rotation_after_a_checkpoint_of_everything_drops_the_old_file(tmp_path: Path) -> None:
    write_log(tmp_path)
    old = only_file(tmp_path)
    log = WriteAheadLog(tmp_path, DIM)
    list(log.replay(0))
    log.rotate(3)
    new = only_file(tmp_path)
    assert new != old and new.name == "wal-00000000000000000004.log"
    assert new.stat().st_size == 0
    assert log.append(OP_DELETE, {"ids": [9]}) == 4
    log.close()
    records, log = replay(tmp_path, after=3)
    assert [(r.lsn, r.header) for r in records] == [(4, {"ids": [9]})]
    assert log.next_lsn == 5


def test_rotation_behind_the_log_keeps_the_unpublished_records(tmp_path: Path) -> None:
    write_log(tmp_path)
    log = WriteAheadLog(tmp_path, DIM)
    list(log.replay(0))
    log.rotate(2)  # record 3 is not checkpointed: its file must stay
    assert len(log.files()) == 2
    log.append(*WRITES[0])
    log.close()
    records, _ = replay(tmp_path, after=2)
    assert [r.lsn for r in records] == [3, 4]
    assert records[1].header == WRITES[0][1]


def test_rotation_of_an_empty_log_then_reopen(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, DIM)
    log.rotate(0)
    log.rotate(0)  # twice in a row: the new file is kept, not deleted as "old"
    assert [p.name for p in log.files()] == ["wal-00000000000000000001.log"]
    assert log.append(OP_DELETE, {"ids": [1]}) == 1
    log.close()
    assert [r.lsn for r in replay(tmp_path)[0]] == [1]


def test_a_missing_log_file_is_a_sequence_gap(tmp_path: Path) -> None:
    write_log(tmp_path)
    log = WriteAheadLog(tmp_path, DIM)
    list(log.replay(0))
    log.rotate(1)  # keeps the first file
    log.append(*WRITES[0])
    log.close()
    first, _ = sorted(tmp_path.glob("wal-*.log"))
    first.unlink()
    with pytest.raises(CorruptIndexError, match="expected record 1, found 4"):
        replay(tmp_path)


def test_a_bad_record_in_an_earlier_file_is_never_cut(tmp_path: Path) -> None:
    write_log(tmp_path)
    log = WriteAheadLog(tmp_path, DIM)
    list(log.replay(0))
    log.rotate(0)
    log.append(*WRITES[0])
    log.close()
    first = sorted(tmp_path.glob("wal-*.log"))[0]
    size = first.stat().st_size
    first.write_bytes(first.read_bytes()[:-3])  # torn, but not the last file
    with pytest.raises(CorruptIndexError, match="is corrupt"):
        replay(tmp_path)
    assert first.stat().st_size == size - 3


@pytest.mark.parametrize("policy", ["always", "", "Batch", None])
def test_fsync_policy_rejects_unknown_values(tmp_path: Path, policy) -> None:
    with pytest.raises(InvalidInputError, match=r"fsync must be one of \['batch', 'off'\]"):
        wal.check_fsync_policy(policy)
    with pytest.raises(InvalidInputError, match=repr(policy)):
        WriteAheadLog(tmp_path / "log", DIM, fsync=policy)


def test_a_rejected_fsync_policy_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        WriteAheadLog(tmp_path / "log", DIM, fsync="always")
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize(("policy", "syncs_per_append"), [("batch", 1), ("off", 0)])
def test_fsync_policy_decides_whether_each_append_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, syncs_per_append: int
) -> None:
    log = WriteAheadLog(tmp_path, DIM, fsync=policy)
    log.append(*WRITES[1])  # opens the file first
    calls = []
    monkeypatch.setattr(wal.os, "fsync", lambda fd: calls.append(fd))
    for op, header, x in WRITES:
        log.append(op, header, x)
    assert len(calls) == 3 * syncs_per_append
    log.close()  # close always syncs
    assert len(calls) == 3 * syncs_per_append + 1
