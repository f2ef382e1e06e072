"""Group commit: concurrent upserts to one collection share one log record, one fsync and one
graph insertion pass.

Writes to a collection take turns (its write lock). When several threads upsert at once
(an application's writer threads, or the server's writer pool serving many clients), each
would pay its own log record, fsync and insertion round while the others wait. Here a
caller queues its batch (already validated) and one caller at a time, the leader, takes
the write lock and commits the queued batches in arrival order, as few groups as possible:
a group ends before a batch that repeats an id already in it (so the later write of an id
still wins) or that would take it past ``max_points``. The others wait for their batch to be
committed, not for the lock.

Each caller returns when its own batch is durable and searchable, as if it had been alone.
A group is one upsert: if its commit fails (a full disk, a failed fsync, a collection that
turned read-only), none of it is written and every caller in it gets that error. Validation
happens before queuing, so a bad batch fails alone and never its neighbours.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Most points one group commits (a single larger batch still goes alone).
MAX_GROUP_POINTS = 8192

#: ``commit(ids, vectors, payload_texts)``, called with the write lock held.
CommitFn = Callable[[list[Any], np.ndarray, list[str | None]], None]


@dataclass(eq=False)
class PendingUpsert:
    """One caller's validated batch, and what became of it."""

    ids: list[Any]
    vectors: np.ndarray
    texts: list[str | None]
    done: bool = False
    error: BaseException | None = None


def take_group(queue: deque[PendingUpsert], max_points: int) -> list[PendingUpsert]:
    """Pop the longest prefix of ``queue`` whose ids are disjoint and whose points fit in
    ``max_points`` (at least one batch, however large)."""
    group: list[PendingUpsert] = []
    seen: set[Any] = set()
    points = 0
    while queue:
        batch = queue[0]
        if group and (points + len(batch.ids) > max_points or not seen.isdisjoint(batch.ids)):
            break
        group.append(queue.popleft())
        seen.update(batch.ids)
        points += len(batch.ids)
    return group


def merged(group: list[PendingUpsert]) -> tuple[list[Any], np.ndarray, list[str | None]]:
    """One upsert made of the group's batches, in order."""
    if len(group) == 1:
        return group[0].ids, group[0].vectors, group[0].texts
    ids = [i for batch in group for i in batch.ids]
    texts = [t for batch in group for t in batch.texts]
    return ids, np.concatenate([batch.vectors for batch in group]), texts


class GroupCommit:
    """The queue of one collection's upserts and its leader election (see the module doc)."""

    def __init__(self, write_lock: Any, commit: CommitFn, max_points: int | None = None) -> None:
        self._write_lock = write_lock
        self._commit = commit
        self._max_points = MAX_GROUP_POINTS if max_points is None else max_points
        self._changed = threading.Condition(threading.Lock())
        self._queue: deque[PendingUpsert] = deque()
        self._leading = False
        self.groups = 0  # groups committed (observability and tests)
        self.batches = 0  # batches in them

    def submit(self, ids: list[Any], vectors: np.ndarray, texts: list[str | None]) -> None:
        """Commit one validated batch (alone or with concurrent ones); raise its group's
        error if the commit failed."""
        item = PendingUpsert(ids, vectors, texts)
        with self._changed:
            self._queue.append(item)
            while self._leading and not item.done:
                self._changed.wait()
            lead = not item.done  # nobody leads and the batch waits: this caller leads
            if lead:
                self._leading = True
        if lead:
            try:
                with self._write_lock:
                    while not item.done:
                        self._commit_next_group()
            finally:
                with self._changed:
                    self._leading = False
                    self._changed.notify_all()
        if item.error is not None:
            raise item.error

    def pending(self) -> int:
        """Batches queued and not yet committed."""
        with self._changed:
            return len(self._queue)

    def _commit_next_group(self) -> None:
        with self._changed:
            group = take_group(self._queue, self._max_points)
        error: BaseException | None = None
        try:
            self._commit(*merged(group))
        except BaseException as exc:  # every caller of the group gets it (re-raised there)
            error = exc
        with self._changed:
            for batch in group:
                batch.error = error
                batch.done = True
            self.groups += 1
            self.batches += len(group)
            self._changed.notify_all()
