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

A log whose files were deleted or cut short at a record boundary reads as valid but shorter;
what the file names promise (a file ``wal-<lsn>.log`` is started right after a checkpoint up to
``lsn - 1``, so a checkpointed collection always has one) exposes it: :attr:`damage` then says
what is missing, and the collection reports it (see :class:`quiver.db.collection.Collection`).

A failed append (``ENOSPC``, ``EIO`` from ``fsync``) is rolled back: the file is cut back to
the end of the last acknowledged record and fsynced, the error reaches the caller and the
record's lsn stays unused. If even the rollback fails the log refuses every later append
(:class:`LogWriteError`) until it is repaired, so no later write is acknowledged after a
record that may be half on disk; each later append first retries the rollback, and the log
accepts writes again once it succeeds.
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
from quiver.errors import CorruptIndexError, InvalidInputError, QuiverError, ReadOnlyError

logger = logging.getLogger(__name__)

FRAME = struct.Struct("<IIQ")  # body length, crc32, lsn
BODY_HEAD = struct.Struct("<BI")  # operation, header length
OP_UPSERT = 1
OP_DELETE = 2
FSYNC_POLICIES = ("batch", "off")
_NAME = "wal-{:020d}.log"


class LogWriteError(QuiverError, OSError):
    """The log could not be written and could not be rolled back to its last acknowledged
    record: it accepts no write until a retried rollback succeeds."""


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
    if len(body) < BODY_HEAD.size:
        raise ValueError(
            f"body of {len(body)} bytes is shorter than its {BODY_HEAD.size}-byte head"
        )
    op, head_len = BODY_HEAD.unpack_from(body)
    start = BODY_HEAD.size
    header = json.loads(body[start : start + head_len])
    raw = body[start + head_len :]
    vectors = np.frombuffer(raw, dtype="<f4").reshape(-1, dim) if op == OP_UPSERT else None
    return Record(lsn, op, header, vectors)


class WriteAheadLog:
    """Append-only, checksummed log in ``directory`` (one writer).

    ``read_only``: replay only; nothing on disk changes (a torn tail is skipped, not cut) and
    :meth:`append` raises :class:`ReadOnlyError`.
    """

    def __init__(
        self, directory: Path, dim: int, fsync: str = "batch", *, read_only: bool = False
    ) -> None:
        self._fsync = check_fsync_policy(fsync)
        self._dir = Path(directory)
        self._read_only = read_only
        if not read_only:
            self._dir.mkdir(parents=True, exist_ok=True)
        self._dim = dim
        self._fd: int | None = None
        self._path: Path | None = None
        self._broken: str | None = None  # why appends are refused (a failed rollback)
        self.next_lsn = 1
        self.bytes = 0  # bytes in the current file (up to the last acknowledged record)
        self.damage: str | None = None  # missing records found by replay, if any

    # ------------------------------------------------------------------ reading
    def files(self) -> list[Path]:
        return sorted(self._dir.glob("wal-*.log")) if self._dir.is_dir() else []

    def replay(self, after_lsn: int) -> Iterator[Record]:
        """Yield the records with ``lsn > after_lsn`` in order; cut a torn tail away.

        Leaves the log ready to append after the last good record. Sets :attr:`damage` when
        the files show that records after ``after_lsn`` are missing (deleted or truncated
        log); appends then continue after the highest lsn the file names promise.
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
        self.damage = self._missing_records(files, after_lsn)

    def _missing_records(self, files: list[Path], after_lsn: int) -> str | None:
        """Why records after ``after_lsn`` must be missing, or None when nothing shows."""
        if not files:
            if after_lsn > 0:
                return (
                    f"{self._dir}: the log is gone (no wal-*.log file) although a checkpoint "
                    f"up to record {after_lsn} started one: writes acknowledged after that "
                    "checkpoint are lost"
                )
            return None
        promised = first_lsn(files[-1])
        if promised is not None and promised > self.next_lsn:
            missing = (self.next_lsn, promised - 1)
            self.next_lsn = promised
            return (
                f"{self._dir}: log records {missing[0]}..{missing[1]} are missing (log files "
                f"deleted or truncated; {files[-1].name} starts at record {promised}): writes "
                "acknowledged then are lost"
            )
        return None

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
                    if not self._read_only:
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
            except (ValueError, UnicodeDecodeError, struct.error) as exc:
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
    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyError(f"{self._dir}: the log is open read-only")
        if self._broken is not None and not self._repair():
            raise LogWriteError(
                f"{self._dir}: the log refuses writes until its rollback succeeds: {self._broken}"
            )

    def _open_for_append(self) -> None:
        files = self.files()
        self._start_file(files[-1] if files else self._dir / _NAME.format(self.next_lsn))

    def _start_file(self, path: Path) -> None:
        """Append to ``path`` (created if needed; its directory entry made durable)."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._path = fd, path
        self.bytes = os.fstat(fd).st_size

    def append(self, op: int, header: dict[str, Any], vectors: np.ndarray | None = None) -> int:
        """Append one record, fsync it (policy ``batch``), and return its lsn.

        On failure the record is rolled back (see the module doc) and the error raised.
        """
        self._check_writable()
        if self._fd is None:
            self._open_for_append()
        lsn = self.next_lsn
        body = encode_body(op, header, vectors)
        crc = zlib.crc32(struct.pack("<Q", lsn) + body)
        frame = FRAME.pack(len(body), crc, lsn) + body
        try:
            _write_all(self._fd, frame)
            if self._fsync == "batch":
                os.fsync(self._fd)
        except BaseException as exc:
            self._roll_back(exc)
            raise
        self.next_lsn = lsn + 1
        self.bytes += len(frame)
        return lsn

    def _repair(self) -> bool:
        """Retry the rollback a failed append could not finish; whether the log is whole."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self.bytes)
                os.fsync(self._fd)
            except OSError:
                return False
        logger.warning("%s: log repaired (cut back to byte %d)", self._dir, self.bytes)
        self._broken = None
        return True

    def _roll_back(self, cause: BaseException) -> None:
        """Cut the current file back to its last acknowledged record (fsynced); when that
        fails too, refuse later appends."""
        try:
            os.ftruncate(self._fd, self.bytes)
            os.fsync(self._fd)
        except OSError as exc:
            self._broken = f"append failed ({cause!r}) and its rollback too ({exc!r})"
            logger.error("%s: %s", self._dir, self._broken)
            return
        logger.error(
            "%s: append of record %d failed (%r); rolled back to byte %d",
            self._dir, self.next_lsn, cause, self.bytes,
        )  # fmt: skip

    def rotate(self, checkpointed_lsn: int) -> None:
        """After a checkpoint up to ``checkpointed_lsn``: start a new file and delete the old
        ones (every record in them is published)."""
        self._check_writable()
        self.close()
        old = self.files()
        self._start_file(self._dir / _NAME.format(self.next_lsn))
        if checkpointed_lsn >= self.next_lsn - 1:
            for path in old:
                if path != self._path:
                    path.unlink(missing_ok=True)
            fsync_dir(self._dir)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self._broken is None:
                    os.fsync(fd)
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a short write is retried)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def first_lsn(path: Path) -> int | None:
    """The lsn a log file's name says its first record has (None for a foreign name)."""
    try:
        return int(path.name[len("wal-") : -len(".log")])
    except ValueError:
        return None


def start_log(directory: Path, next_lsn: int) -> None:
    """Create the (empty) log of a collection whose checkpoint covers ``next_lsn - 1``: what a
    checkpoint leaves behind, for a collection restored from a snapshot."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / _NAME.format(next_lsn), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(directory)
