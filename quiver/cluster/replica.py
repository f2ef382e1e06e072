"""One replica of one shard on a node: a quiver collection plus the shard's replication log.

Every write a shard accepts gets a sequence number (``seq``, consecutive from 1) from the
shard's primary and the ``epoch`` the primary was elected in. A replica applies writes in
``seq`` order only: a repeated ``seq`` is skipped (an idempotent retry), a gap is refused
(:class:`ReplicaGapError`: the replica missed writes and must catch up first), and a write from
an older epoch is refused (:class:`~quiver.errors.StaleEpochError`: a deposed primary).

The replication log is a :class:`~quiver.db.wal.WriteAheadLog` whose record numbers are the
``seq`` (framed, checksummed, fsynced before the write is applied); each record's header holds
the op's ids, payloads and epoch. It is retained, so a follower that missed writes catches up
by replaying the records after its last one; a replica that diverged (it holds a write no
other replica acknowledged) or is too far behind is replaced by a snapshot of the primary's
collection plus the records after it.

The replica's small state file (``<log dir>.json``: the epoch seen, the seq and epoch the log
starts after, the seq the collection was last checkpointed at) is written atomically. On open,
the log records after that checkpoint are applied again: upserts and deletes by id give the
same result when repeated in order, so a crash between the log append and the collection's own
write loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from quiver.db.collection import Collection
from quiver.db.database import Database
from quiver.db.wal import OP_DELETE, OP_UPSERT, WriteAheadLog, start_log
from quiver.engine.store import fsync_dir
from quiver.errors import InvalidInputError, QuiverError, StaleEpochError

logger = logging.getLogger(__name__)

#: Checkpoint the collection (and record the seq it covers) after this many applied writes,
#: or after writes of this many points, whichever comes first: bounds what a restart re-applies
#: from the replication log (re-applying an upsert inserts its points into the graph again, so
#: a bulk load of large batches must not leave all of it to re-apply).
CHECKPOINT_EVERY = 512
CHECKPOINT_POINTS = 50_000
#: Writes the replication log keeps for catching followers up by replay; at a checkpoint past
#: this many, the log restarts (a follower further behind gets a snapshot instead).
RETAIN_WRITES = 100_000


class ReplicaGapError(QuiverError, RuntimeError):
    """A write skipped ahead of the replica's last seq: it missed writes and must catch up."""


class Op(NamedTuple):
    """One replicated write: its ``seq``, ``epoch``, kind (``OP_UPSERT``/``OP_DELETE``), ids,
    payloads (upserts) and float32 vectors (upserts)."""

    seq: int
    epoch: int
    kind: int
    ids: list[Any]
    payloads: list[Any] | None
    vectors: np.ndarray | None


def replica_name(collection: str, shard: int) -> str:
    """The name of shard ``shard`` of ``collection`` in a node's database."""
    return f"{collection}__s{shard}"


class ShardReplica:
    """A replica's collection, replication log and fencing state (see the module doc).

    Thread safety: writes, catch-up and snapshots hold ``lock``; reads use the collection
    directly (lock-free, as in an embedded database).
    """

    def __init__(
        self,
        db: Database,
        collection: Collection,
        log_dir: Path,
        retain_writes: int = RETAIN_WRITES,
        checkpoint_points: int = CHECKPOINT_POINTS,
    ) -> None:
        self.db = db
        self._retain_writes = retain_writes
        self._checkpoint_points = checkpoint_points
        self.collection = collection
        self.lock = threading.RLock()
        self._log_dir = log_dir
        self._state_file = log_dir.with_name(log_dir.name + ".json")
        state = self._read_state()
        self.epoch: int = state["epoch"]
        self._base_seq: int = state["base_seq"]
        self._base_epoch: int = state["base_epoch"]
        self._checkpoint_seq: int = state["checkpoint_seq"]
        if not log_dir.is_dir():
            start_log(log_dir, self._base_seq + 1)
        self._log = WriteAheadLog(log_dir, collection.dim)
        self.last_seq, self.last_epoch = self._base_seq, self._base_epoch
        reapplied = points = 0
        for record in self._log.replay(self._base_seq):
            self.last_seq, self.last_epoch = record.lsn, record.header["epoch"]
            if record.lsn > self._checkpoint_seq:
                op = self._op_of(record)
                self._apply_to_collection(op)
                reapplied += 1
                points += len(op.ids)
        self._since_checkpoint, self._points_since_checkpoint = reapplied, points
        #: writes re-applied from the log when this replica opened (what a restart cost)
        self.reapplied = reapplied
        if reapplied:
            logger.info("%s: re-applied %d replicated writes", collection.name, reapplied)
        #: the primary's followers (node names) while this replica is primary; empty otherwise
        self.followers: list[str] = []
        self.is_primary = False
        #: reads are served only once the coordinator has confirmed the replica is in sync
        self.readable = False

    # ------------------------------------------------------------------ state file
    def _read_state(self) -> dict[str, int]:
        if not self._state_file.is_file():
            return {"epoch": 0, "base_seq": 0, "base_epoch": 0, "checkpoint_seq": 0}
        return {k: int(v) for k, v in json.loads(self._state_file.read_text()).items()}

    def _write_state(self) -> None:
        state = {
            "epoch": self.epoch,
            "base_seq": self._base_seq,
            "base_epoch": self._base_epoch,
            "checkpoint_seq": self._checkpoint_seq,
        }
        tmp = self._state_file.with_name(self._state_file.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._state_file)
        fsync_dir(self._state_file.parent)

    # ------------------------------------------------------------------ fencing
    def observe_epoch(self, epoch: int) -> None:
        """Refuse ``epoch`` if older than the replica's; adopt (and persist) a newer one."""
        if epoch < self.epoch:
            raise StaleEpochError(
                f"{self.collection.name}: write of epoch {epoch} refused, the replica is at "
                f"epoch {self.epoch} (the shard's primary changed)"
            )
        if epoch > self.epoch:
            self.epoch = epoch
            self._write_state()

    def status(self) -> dict[str, Any]:
        """What the coordinator needs to compare replicas."""
        return {
            "last_seq": self.last_seq,
            "last_epoch": self.last_epoch,
            "epoch": self.epoch,
            "base_seq": self._base_seq,
            "is_primary": self.is_primary,
            "readable": self.readable,
            "followers": list(self.followers),
            "count": self.collection.count(),
        }

    # ------------------------------------------------------------------ writes
    @staticmethod
    def _op_of(record: Any) -> Op:
        h = record.header
        return Op(record.lsn, h["epoch"], record.op, h["ids"], h.get("payloads"), record.vectors)

    def _apply_to_collection(self, op: Op) -> None:
        if op.kind == OP_UPSERT:
            self.collection.upsert(op.ids, op.vectors, op.payloads)
        elif op.kind == OP_DELETE:
            self.collection.delete(op.ids)
        else:
            raise InvalidInputError(f"unknown replicated operation {op.kind}")

    def apply(self, op: Op, sender_epoch: int | None = None) -> int:
        """Apply one replicated write in seq order; return the replica's last seq.

        A seq already applied is skipped (idempotent retry); a gap raises
        :class:`ReplicaGapError`; a sender at an older epoch raises :class:`StaleEpochError`.
        ``sender_epoch``: the epoch of the primary sending ``op`` (default ``op.epoch``). It is
        what is fenced, not ``op.epoch``: a catch-up replays writes of earlier epochs that the
        current primary holds, and they are as valid as when they were acknowledged.
        """
        with self.lock:
            self.observe_epoch(op.epoch if sender_epoch is None else sender_epoch)
            if op.seq <= self.last_seq:
                return self.last_seq
            if op.seq != self.last_seq + 1:
                raise ReplicaGapError(
                    f"{self.collection.name}: write seq {op.seq} after seq {self.last_seq}: "
                    f"{op.seq - self.last_seq - 1} writes missed, catch up first"
                )
            header: dict[str, Any] = {"epoch": op.epoch, "ids": op.ids}
            if op.kind == OP_UPSERT:
                header["payloads"] = op.payloads
            lsn = self._log.append(op.kind, header, op.vectors)
            if lsn != op.seq:  # the log numbers records as the shard numbers writes
                raise QuiverError(f"replication log at {lsn}, expected seq {op.seq}")
            self._apply_to_collection(op)
            self.last_seq, self.last_epoch = op.seq, op.epoch
            self._since_checkpoint += 1
            self._points_since_checkpoint += len(op.ids)
            if (
                self._since_checkpoint >= CHECKPOINT_EVERY
                or self._points_since_checkpoint >= self._checkpoint_points
            ):
                self.checkpoint()
            return self.last_seq

    def next_op(self, kind: int, ids: list[Any], vectors: Any, payloads: Any) -> Op:
        """The op the primary logs next for this write (its seq and the current epoch)."""
        return Op(self.last_seq + 1, self.epoch, kind, ids, payloads, vectors)

    def checkpoint(self) -> None:
        """Checkpoint the collection and record the seq it covers; past ``retain_writes``
        retained writes the replication log restarts after that seq (the state file says so
        first, so a crash before the old files are gone only leaves them unread)."""
        with self.lock:
            self.collection.checkpoint()
            self._checkpoint_seq = self.last_seq
            self._since_checkpoint = self._points_since_checkpoint = 0
            trim = self.last_seq - self._base_seq > self._retain_writes
            if trim:
                self._base_seq, self._base_epoch = self.last_seq, self.last_epoch
            self._write_state()
            if trim:
                self._log.rotate(self.last_seq)

    # ------------------------------------------------------------------ catch-up
    def epoch_at(self, seq: int) -> int | None:
        """The epoch of this replica's write ``seq``, or None when it is not retained here."""
        if seq == self._base_seq:
            return self._base_epoch
        if not self._base_seq < seq <= self.last_seq:
            return None
        for record in WriteAheadLog(self._log_dir, self.collection.dim, read_only=True).replay(
            seq - 1
        ):
            return int(record.header["epoch"])
        return None

    def ops_after(self, seq: int) -> list[Op]:
        """The retained writes after ``seq``, in order (``seq >= base_seq``)."""
        log = WriteAheadLog(self._log_dir, self.collection.dim, read_only=True)
        return [self._op_of(r) for r in log.replay(seq) if r.lsn <= self.last_seq]

    def snapshot_bytes(self) -> tuple[bytes, int, int]:
        """A snapshot of the collection as bytes and the (seq, epoch) it holds everything up to."""
        with self.lock, tempfile.TemporaryDirectory(prefix="quiver-snap-") as tmp:
            path = self.collection.snapshot(Path(tmp) / "replica.snapshot")
            return path.read_bytes(), self.last_seq, self.last_epoch

    def install_snapshot(self, data: bytes, seq: int, epoch: int) -> None:
        """Replace the collection by a snapshot holding the writes up to ``seq`` (of
        ``epoch``); the replication log restarts after it."""
        with self.lock, tempfile.TemporaryDirectory(prefix="quiver-snap-") as tmp:
            file = Path(tmp) / "replica.snapshot"
            file.write_bytes(data)
            self.collection = self.db.restore_snapshot(file, self.collection.name, replace=True)
            self._log.close()
            shutil.rmtree(self._log_dir)
            start_log(self._log_dir, seq + 1)
            self._log = WriteAheadLog(self._log_dir, self.collection.dim)
            for _ in self._log.replay(seq):
                pass
            self._base_seq = self._checkpoint_seq = self.last_seq = seq
            self._base_epoch = self.last_epoch = epoch
            self._since_checkpoint = self._points_since_checkpoint = 0
            self._write_state()

    def close(self) -> None:
        with self.lock:
            self._log.close()
