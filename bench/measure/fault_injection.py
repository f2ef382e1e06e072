"""Fault injection: I/O errors at random points of upserts, deletes, checkpoints and
consolidations; after each, the directory as a crash would leave it reopens with exactly the
acknowledged writes.

Each round makes the n-th low-level I/O call of one kind fail once (``os.fsync`` with EIO,
``os.write`` with ENOSPC after writing part of its data, ``os.replace`` with EIO, or a write of
an index file with ENOSPC), records which calls returned (acknowledged) and which raised,
writes once more after the failure (the log must go on cleanly), copies the data directory (as
a crash would leave it) and checks that the copy holds exactly the acknowledged points and
payloads.

    python -m bench.measure.fault_injection --rounds 200   # -> bench/results/fault-injection.json

A reduced run is in the test suite (tests/test_fault_injection.py).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

import quiver
from bench.paths import RESULTS_DIR
from quiver.engine import store

DIM = 8


def low_rank(n: int, seed: int) -> np.ndarray:
    """Seeded low-rank float32 vectors (structured, as embeddings are)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) @ rng.standard_normal((3, DIM))
    return (x + 0.05 * rng.standard_normal((n, DIM))).astype(np.float32)


#: The failure kinds, and up to how many calls of that kind a round's first failure waits.
KINDS = {"fsync": 40, "write": 12, "replace": 4, "index file write": 40}


class Injector:
    """Fails the ``at``-th call of one kind of I/O (counting from arming), once. A context
    manager: the patches are in place inside ``with``."""

    def __init__(self) -> None:
        self.calls = 0
        self.at = -1
        self.kind = ""
        self.fired: str | None = None
        real_fsync, real_write, real_replace = os.fsync, os.write, os.replace
        real_file_write = store.ChecksumWriter.write

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

        self._patches = [
            (os, "fsync", fsync),
            (os, "write", write),
            (os, "replace", replace),
            (store.ChecksumWriter, "write", file_write),
        ]
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> Injector:
        for owner, name, patched in self._patches:
            self._saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, patched)
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

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
    x = low_rank(400, int(rng.integers(1 << 30)))
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


def run_rounds(rounds: int, seed: int, work: Path) -> dict:
    """``rounds`` rounds cycling through the failure kinds; the counts of what was injected.
    Raises AssertionError at the first round whose reopened copy differs."""
    rng = np.random.default_rng(seed)
    fired: list[str] = []
    with Injector() as injector:
        for r in range(rounds):
            what = run_round(work / f"r{r}", rng, injector, list(KINDS)[r % len(KINDS)])
            if what is not None:
                fired.append(what)
            shutil.rmtree(work / f"r{r}")
    return {"rounds": rounds, "injected": len(fired), "by_kind": dict(Counter(fired))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS_DIR / "fault-injection.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_rounds(args.rounds, args.seed, Path(tmp))
    summary["mismatches"] = 0  # run_rounds stops with AssertionError at the first one
    summary["command"] = "python -m bench.measure.fault_injection " + " ".join(sys.argv[1:])
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
