"""Fault injection: I/O errors at random points of upserts, deletes, checkpoints and
consolidations; after each, the directory as a crash would leave it reopens with exactly the
acknowledged writes.

An injector makes the n-th low-level I/O call of a round fail once (``os.fsync`` with EIO,
``os.write`` with ENOSPC after writing part of its data, ``os.replace`` with EIO, or a write of
an index file with ENOSPC). The round records which calls returned (acknowledged) and which
raised, writes once more after the failure (the log must go on cleanly), copies the data
directory and opens the copy.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from quiver.engine import store

DIM = 8
ROUNDS = 64  # rounds whose failure point falls inside the round's I/O: 50 or more
MIN_INJECTED = 50


#: The failure kinds, and up to how many calls of that kind a round's first failure waits.
KINDS = {"fsync": 40, "write": 12, "replace": 4, "index file write": 40}


class Injector:
    """Fails the ``at``-th call of one kind of I/O (counting from arming), once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
        self.calls = 0
        self.at = -1
        self.kind = ""
        self.fired: str | None = None
        real_fsync, real_write, real_replace = os.fsync, os.write, os.replace
        real_file_write = store._ChecksumWriter.write

        def fsync(fd):
            self._maybe_fail("fsync", errno.EIO)
            return real_fsync(fd)

        def write(fd, data):
            if self._due("write"):
                real_write(fd, bytes(data)[: max(len(data) // 2, 1)])  # a partial write
                self._fail("write", errno.ENOSPC)
            return real_write(fd, data)

        def replace(src, dst):
            self._maybe_fail("replace", errno.EIO)
            return real_replace(src, dst)

        def file_write(writer, data):
            self._maybe_fail("index file write", errno.ENOSPC)
            return real_file_write(writer, data)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(store._ChecksumWriter, "write", file_write)
        self._rng = rng

    def arm(self, kind: str, at: int) -> None:
        self.calls, self.kind, self.at, self.fired = 0, kind, at, None

    def disarm(self) -> None:
        self.at = -1

    def _due(self, kind: str) -> bool:
        if self.at < 0 or self.fired is not None or kind != self.kind:
            return False
        self.calls += 1
        return self.calls == self.at

    def _maybe_fail(self, what: str, code: int) -> None:
        if self._due(what):
            self._fail(what, code)

    def _fail(self, what: str, code: int) -> None:
        self.fired = what
        raise OSError(code, f"injected {what} failure")


def run_round(
    directory: Path, rng: np.random.Generator, injector: Injector, kind: str
) -> str | None:
    """One round; returns the injected failure (None when the round ended before it)."""
    x = low_rank_data(400, DIM, seed=int(rng.integers(1 << 30))).astype(np.float32)
    db = quiver.Database(directory / "db", checkpoint_bytes=2500, consolidate_fraction=1.0)
    c = db.create_collection("c", DIM, max_degree=8, build_list_size=16)
    model: dict[int, dict] = {}
    next_id = 0
    injector.arm(kind, int(rng.integers(1, KINDS[kind] + 1)))
    try:
        for step in range(14):
            op = rng.choice(["upsert", "upsert", "delete", "checkpoint", "consolidate"])
            try:
                if op == "upsert":
                    reused = [i for i in model if rng.random() < 0.1][:3]
                    ids = reused + list(range(next_id, next_id + 12))
                    next_id += 12
                    payloads = [{"v": int(rng.integers(1000)), "step": step} for _ in ids]
                    c.upsert(ids, x[np.array(ids) % len(x)], payloads)
                    model.update(zip(ids, payloads, strict=True))
                elif op == "delete" and model:
                    gone = [i for i in model if rng.random() < 0.3]
                    c.delete(gone)
                    for i in gone:
                        model.pop(i)
                elif op == "checkpoint":
                    c.checkpoint(force=True)
                elif op == "consolidate":
                    c.consolidate()
            except OSError as exc:  # not acknowledged: must not be visible after a crash
                assert "injected" in str(exc) or isinstance(exc, quiver.QuiverError), exc
        injector.disarm()
        c.upsert([10**6], x[:1], [{"after": True}])  # the log goes on after the failure
        model[10**6] = {"after": True}
        shutil.copytree(directory / "db", directory / "crashed")  # as a crash leaves it
    finally:
        injector.disarm()
        db.close()
    with quiver.Database(directory / "crashed") as reopened:
        got = reopened.get_collection("c").scroll(limit=100_000)[0]
        assert {p.id: p.payload for p in got} == model, f"after an injected {injector.fired}"
    return injector.fired


def test_injected_io_failures_never_lose_or_invent_acknowledged_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    injector = Injector(monkeypatch, rng)
    fired = []
    for r in range(ROUNDS):
        what = run_round(tmp_path / f"r{r}", rng, injector, list(KINDS)[r % len(KINDS)])
        if what is not None:
            fired.append(what)
        shutil.rmtree(tmp_path / f"r{r}")
    assert len(fired) >= MIN_INJECTED, f"only {len(fired)} failures were injected"
    assert set(KINDS) <= set(fired), set(fired)
