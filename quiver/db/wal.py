"""Write-ahead log: every acknowledged write is framed, checksummed and (by default) fsynced
before the call that made it returns.

A log is a directory of files ``wal-<first lsn>.log``. Each record is a frame::

    u32 body length | u32 crc32(lsn + body) | u64 lsn | body

with ``body`` = u8 operation | u32 header length | JSON header | raw little-endian float32
vectors. Records carry consecutive log sequence numbers (lsn). A checkpoint publishes the
collection up to some lsn; the log then rotates to a new file and files holding only older
records are deleted, so replay on open reads only what came after the last checkpoint.

Reading tolerates exactly one kind of damage, the one a crash leaves: a torn last record (cut
off, or its bytes not all written). It is cut away with a warning. A bad record followed by a
valid one is corruption of acknowledged data and raises :class:`CorruptIndexError`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quiver.engine.store import fsync_dir
from quiver.errors import CorruptIndexError, InvalidInputError

logger = logging.getLogger(__name__)

FRAME = struct.Struct("<IIQ")  # body length, crc32, lsn
BODY_HEAD = struct.Struct("<BI")  # operation, header length
OP_UPSERT = 1
OP_DELETE = 2
FSYNC_POLICIES = ("batch", "off")
_NAME = "wal-{:020d}.log"


@dataclass(frozen=True)
class Record:
    """One logged write: ``op`` (``OP_UPSERT``/``OP_DELETE``), its ``header`` (ids, payloads)
    and, for upserts, the float32 ``vectors`` (n, dim)."""

    lsn: int
    op: int
    header: dict[str, Any]
    vectors: np.ndarray | None


def check_fsync_policy(policy: str) -> str:
    if policy not in FSYNC_POLICIES:
        raise InvalidInputError(f"fsync must be one of {list(FSYNC_POLICIES)}, got {policy!r}")
    return policy


def encode_body(op: int, header: dict[str, Any], vectors: np.ndarray | None) -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw = b"" if vectors is None else np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    return BODY_HEAD.pack(op, len(head)) + head + raw


def decode_body(lsn: int, body: bytes, dim: int) -> Record:
    op, head_len = BODY_HEAD.unpack_from(body)
    start = BODY_HEAD.size
    header = json.loads(body[start : start + head_len])
    raw = body[start + head_len :]
    vectors = np.frombuffer(raw, dtype="<f4").reshape(-1, dim) if op == OP_UPSERT else None
    return Record(lsn, op, header, vectors)


class WriteAheadLog:
    """Append-only, checksummed log in ``directory`` (one writer)."""

    def __init__(self, directory: Path, dim: int, fsync: str = "batch") -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dim = dim
        self._fsync = check_fsync_policy(fsync)
        self._file: Any = None
        self._path: Path | None = None
        self.next_lsn = 1
        self.bytes = 0  # bytes in the current file

    # ------------------------------------------------------------------ reading
    def files(self) -> list[Path]:
        return sorted(self._dir.glob("wal-*.log"))

    def replay(self, after_lsn: int) -> Iterator[Record]:
        """Yield the records with ``lsn > after_lsn`` in order; cut a torn tail away.

        Leaves the log ready to append after the last good record.
        """
        last = after_lsn
        files = self.files()
        for i, path in enumerate(files):
            for record in self._read_file(path, is_last=i == len(files) - 1):
                if record.lsn <= after_lsn:
                    continue
                if record.lsn != last + 1:
                    raise CorruptIndexError(
                        f"{path}: log sequence gap: expected record {last + 1}, found "
                        f"{record.lsn} (a log file is missing or was altered)"
                    )
                last = record.lsn
                yield record
        self.next_lsn = last + 1

    def _read_file(self, path: Path, is_last: bool) -> Iterator[Record]:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            bad = self._check_frame(data, pos)
            if bad:
                if is_last and not self._valid_frame_after(data, pos):
                    logger.warning(
                        "%s: cutting a torn record at byte %d (%s; %d bytes dropped): a write "
                        "that was interrupted before it was acknowledged",
                        path,
                        pos,
                        bad,
                        len(data) - pos,
                    )
                    with open(path, "r+b") as fh:
                        fh.truncate(pos)
                        fh.flush()
                        os.fsync(fh.fileno())
                    return
                raise CorruptIndexError(
                    f"{path}: record at byte {pos} is corrupt ({bad}) but later records exist: "
                    "acknowledged writes would be lost, refusing to continue"
                )
            length, _, lsn = FRAME.unpack_from(data, pos)
            body = data[pos + FRAME.size : pos + FRAME.size + length]
            try:
                yield decode_body(lsn, body, self._dim)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CorruptIndexError(
                    f"{path}: record {lsn} has a valid checksum but cannot be decoded: {exc}"
                ) from exc
            pos += FRAME.size + length

    @staticmethod
    def _check_frame(data: bytes, pos: int) -> str:
        """Empty string when a whole, checksum-valid frame starts at ``pos``, else why not."""
        if pos + FRAME.size > len(data):
            return "frame header cut off"
        length, crc, lsn = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        if end > len(data):
            return "record body cut off"
        body = data[pos + FRAME.size : end]
        if zlib.crc32(struct.pack("<Q", lsn) + body) != crc:
            return "checksum mismatch"
        return ""

    def _valid_frame_after(self, data: bytes, pos: int) -> bool:
        """Whether a checksum-valid frame starts anywhere after ``pos`` (corruption test)."""
        for start in range(pos + 1, len(data) - FRAME.size + 1):
            if not self._check_frame(data, start):
                return True
        return False

    # ------------------------------------------------------------------ writing
    def _open_for_append(self) -> None:
        files = self.files()
        self._start_file(files[-1] if files else self._dir / _NAME.format(self.next_lsn))

    def _start_file(self, path: Path) -> None:
        """Append to ``path`` (created if needed; its directory entry made durable)."""
        self._path = path
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for appends
        self.bytes = self._file.tell()
        fsync_dir(self._dir)

    def append(self, op: int, header: dict[str, Any], vectors: np.ndarray | None = None) -> int:
        """Append one record, fsync it (policy ``batch``), and return its lsn."""
        if self._file is None:
            self._open_for_append()
        lsn = self.next_lsn
        body = encode_body(op, header, vectors)
        crc = zlib.crc32(struct.pack("<Q", lsn) + body)
        self._file.write(FRAME.pack(len(body), crc, lsn) + body)
        self._file.flush()
        if self._fsync == "batch":
            os.fsync(self._file.fileno())
        self.next_lsn = lsn + 1
        self.bytes += FRAME.size + len(body)
        return lsn

    def rotate(self, checkpointed_lsn: int) -> None:
        """After a checkpoint up to ``checkpointed_lsn``: start a new file and delete the old
        ones (every record in them is published)."""
        self.close()
        old = self.files()
        self._start_file(self._dir / _NAME.format(self.next_lsn))
        if checkpointed_lsn >= self.next_lsn - 1:
            for path in old:
                if path != self._path:
                    path.unlink(missing_ok=True)
            fsync_dir(self._dir)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
