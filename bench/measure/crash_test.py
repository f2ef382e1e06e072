"""Crash test: kill a writer with SIGKILL at random moments; every acknowledged write survives.

A writer process upserts batches of real MiniLM vectors (the bundled slice) with payloads and
deletes part of older batches, printing ``ACK`` after each call returns; small checkpoint and
consolidation thresholds make checkpoints, log rotations and background consolidations happen
all the time. The parent kills it with SIGKILL after a random delay, reopens the database and
checks: every acknowledged upsert is present with its payload and vector, every acknowledged
delete is gone, the interrupted call is entirely present or entirely absent; the recovered
collection, checkpointed, closed and opened cleanly, returns exactly the same results, and its
recall@10 is within 1 point of the clean open's; the recall of a fresh build of the same
points is recorded beside it (a build without the collection's history of inserts, deletes
and consolidations: the gap measures that history, not the recovery).

    python -m bench.measure.crash_test --trials 100          # writes bench/results/crash-test.json

``--ops`` adds the directory operations to the writer's loop (an explicit checkpoint, a
consolidation, a snapshot, a ``restore_snapshot(replace=True)`` of collection "mirror", the
creation and the drop of collection "tmp", in turn after each batch) and checks, after each
kill, that the directory opens, that every acknowledged write is there, and that no name is
stuck (a collection directory that is not listed, or a listed collection that cannot be read);
it skips the recall comparison, so trials are quick:

    python -m bench.measure.crash_test --ops --trials 200 --out bench/results/crash-test-ops.json

The same functions run a reduced version in the test suite (tests/test_durability.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.paths import REPO_ROOT

BATCH = 40
COLLECTION = "crash"
#: Recovered recall@10 may trail the same data opened cleanly by at most this much.
RECALL_SLACK = 0.01
log = logging.getLogger("crash_test")


def batch_rows(b: int, n_rows: int) -> np.ndarray:
    return (np.arange(b * BATCH, (b + 1) * BATCH) * 7) % n_rows


def batch_ids(b: int) -> list[int]:
    return list(range(b * BATCH, (b + 1) * BATCH))


def deleted_ids(b: int) -> list[int]:
    """Batch ``b`` deletes a quarter of batch ``b - 2`` (every third batch)."""
    return batch_ids(b - 2)[: BATCH // 4] if b >= 2 and b % 3 == 0 else []


#: Side collections of the --ops writer: restored over and over, created and dropped.
MIRROR, TEMP = "mirror", "tmp"
OPERATIONS = ("checkpoint", "consolidate", "snapshot", "restore-replace", "create", "drop")


def run_writer(db_dir: str, start: int, fsync: str, ops: bool = False) -> None:
    """Upsert batch after batch from ``start``; print ACK lines; runs until killed."""
    import quiver
    from bench.harness.bundled import load_wordnet_slice

    train = load_wordnet_slice().train
    db = quiver.Database(db_dir, fsync=fsync, checkpoint_bytes=400_000, consolidate_fraction=0.1)
    try:
        c = db.get_collection(COLLECTION)
    except quiver.CollectionNotFoundError:
        c = db.create_collection(COLLECTION, train.shape[1])
    print("READY", flush=True)
    b = start
    while True:
        rows = batch_rows(b, len(train))
        c.upsert(batch_ids(b), train[rows], [{"batch": b, "i": i} for i in range(BATCH)])
        print(f"ACK upsert {b}", flush=True)
        gone = deleted_ids(b)
        if gone:
            c.delete(gone)
            print(f"ACK delete {b}", flush=True)
        if ops:
            directory_operation(db, c, b, Path(db_dir).parent / "snapshot.tar", train.shape[1])
        b += 1


def directory_operation(db, c, b: int, snapshot: Path, dim: int) -> None:
    """One of the operations the --ops writer interleaves with its batches."""
    step = b % 6
    print(f"OP {OPERATIONS[step]}", flush=True)  # the operation a kill may interrupt
    if step == 0:
        c.checkpoint(force=True)
    elif step == 1:
        c.consolidate()
    elif step == 2:
        c.snapshot(snapshot)
    elif step == 3 and snapshot.exists():
        db.restore_snapshot(snapshot, MIRROR, replace=True)
    elif step == 4 and TEMP not in db.list_collections():
        db.create_collection(TEMP, dim)
    elif step == 5 and TEMP in db.list_collections():
        db.drop_collection(TEMP)


@dataclass
class Model:
    """What the database must hold: acknowledged upserted ids and deleted ids."""

    present: dict[int, int] = field(default_factory=dict)  # id -> batch
    next_batch: int = 0

    def upsert(self, b: int) -> None:
        for i in batch_ids(b):
            self.present[i] = b

    def delete(self, b: int) -> None:
        for i in deleted_ids(b):
            self.present.pop(i, None)


def trial(
    db_dir: Path, model: Model, rng: np.random.Generator, fsync: str = "batch", ops: bool = False
) -> dict:
    """One writer run killed at a random moment, then a check. Returns the trial's record."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.measure.crash_test", "--writer", str(db_dir),
         "--start", str(model.next_batch), "--fsync", fsync] + (["--ops"] if ops else []),
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        raise RuntimeError(f"writer failed to start (exit {proc.wait()})")
    delay = float(rng.uniform(0.05, 1.5))
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    started = model.next_batch
    last_ack = started - 1
    interrupted = "write"
    for line in out.splitlines():
        if line.startswith("OP "):
            interrupted = line.split()[1]
            continue
        interrupted = "write"
        _, op, b = line.split()
        if op == "upsert":
            model.upsert(int(b))
            last_ack = int(b)
        else:
            model.delete(int(b))
    if ops:
        return {"interrupted": interrupted, **check_ops(db_dir, model, last_ack, delay)}
    return check(db_dir, model, last_ack, delay)


def check_ops(db_dir: Path, model: Model, last_ack: int, delay: float) -> dict:
    """The --ops check: the directory opens, acknowledged writes are there, no name is stuck."""
    import quiver

    record = {"kill_after_s": round(delay, 3), "unopenable": 0, "lost": 0, "stuck": 0}
    try:
        db = quiver.Database(db_dir)
    except Exception as exc:  # the directory must always open
        return {**record, "unopenable": 1, "failures": [f"open failed: {exc!r}"]}
    try:
        c = db.get_collection(COLLECTION)
        failures, _, _ = check_points(c, model, last_ack)
        record["lost"] = sum("missing" in f or "count" in f for f in failures)
        listed = set(db.list_collections())
        for name in (MIRROR, TEMP):
            on_disk = (db_dir / "collections" / name).exists()
            try:
                if name in listed:
                    db.get_collection(name).count()
            except Exception as exc:
                failures.append(f"{name}: listed but unreadable: {exc!r}")
                record["stuck"] += 1
            if on_disk != (name in listed):
                failures.append(f"{name}: directory {on_disk}, listed {name in listed}")
                record["stuck"] += 1
        db.create_collection("probe", 4)  # names come and go freely
        db.drop_collection("probe")
        record["points"] = len(model.present)
    finally:
        db.close()
    return {**record, "failures": failures}


def check_points(c, model: Model, last_ack: int) -> tuple[list[str], list, int]:
    """Check collection ``c`` against the model (the interrupted calls: the upsert of batch
    ``last_ack + 1`` and the delete of ``last_ack``, each all or nothing); return the
    failures, the acknowledged points read back and the last acknowledged batch."""
    from bench.harness.bundled import load_wordnet_slice

    train = load_wordnet_slice().train
    failures: list[str] = []
    # the interrupted calls: the upsert of batch last_ack + 1 and the delete of last_ack
    pending = last_ack + 1
    got = {p.id for p in c.retrieve(batch_ids(pending))}
    if got and got != set(batch_ids(pending)):
        failures.append(f"batch {pending} partially visible: {len(got)} of {BATCH}")
    if got:
        model.upsert(pending)
        last_ack = pending
    gone = deleted_ids(last_ack)
    if gone:
        left = {p.id for p in c.retrieve(gone)}
        if left and left != set(gone):
            failures.append(f"delete of batch {last_ack} partially applied")
        if not left:
            model.delete(last_ack)
    model.next_batch = last_ack + 2  # never reuse the ids of an unacknowledged batch
    ids = sorted(model.present)
    points = c.retrieve(ids, with_payload=True, with_vector=True)
    if len(points) != len(ids):
        missing = set(ids) - {p.id for p in points}
        failures.append(f"{len(missing)} acknowledged points missing, e.g. {min(missing)}")
    for p in points:
        b = model.present[p.id]
        if p.payload is None or p.payload.get("batch") != b:
            failures.append(f"point {p.id}: payload {p.payload} is not batch {b}'s")
            break
        row = batch_rows(b, len(train))[p.id - b * BATCH]
        want = train[row] / np.linalg.norm(train[row])
        if not np.allclose(p.vector, want, atol=1e-5):
            failures.append(f"point {p.id}: vector differs")
            break
    if c.count() != len(ids):
        failures.append(f"count {c.count()} but {len(ids)} points acknowledged")
    return failures, points, last_ack


def check(db_dir: Path, model: Model, last_ack: int, delay: float) -> dict:
    import quiver
    from bench.harness.bundled import load_wordnet_slice
    from quiver import exact_search, recall_at_k

    queries = load_wordnet_slice().test
    t0 = time.perf_counter()
    db = quiver.Database(db_dir)
    open_s = time.perf_counter() - t0
    r_rec = r_fresh = r_clean = float("nan")
    try:
        c = db.get_collection(COLLECTION)
        failures, points, last_ack = check_points(c, model, last_ack)
        # recall against the exact answer, recovered vs a fresh build of the same points
        x = np.array([p.vector for p in points], dtype=np.float32)
        _, gt = exact_search(x, queries, 10, "cosine")
        fresh = quiver.Index(x.shape[1], "cosine")
        fresh.add(x)
        r_fresh = recall_at_k(fresh.search(queries, 10, 64).distances, gt, 10)
        hits = c.search_batch(queries, k=10)
        r_rec = _recall(hits, gt)
    finally:
        db.close()  # checkpoints the recovered state
    db = quiver.Database(db_dir)
    try:
        clean = db.get_collection(COLLECTION).search_batch(queries, k=10)
        r_clean = _recall(clean, gt)
        if [[h.id for h in hs] for hs in clean] != [[h.id for h in hs] for hs in hits]:
            failures.append("a clean reopen returns different results than the recovery")
        if r_rec < r_clean - RECALL_SLACK:
            failures.append(f"recall {r_rec:.3f} vs clean open {r_clean:.3f}")
    finally:
        db.close()
    return {
        "kill_after_s": round(delay, 3),
        "points": len(model.present),
        "open_s": round(open_s, 3),
        "recall_recovered": round(float(r_rec), 4),
        "recall_clean_open": round(float(r_clean), 4),
        "recall_fresh_build": round(float(r_fresh), 4),
        "failures": failures,
    }


def _recall(hits, gt) -> float:
    from quiver import recall_at_k

    got = np.array([[1 - h.score for h in hs] + [np.inf] * (10 - len(hs)) for hs in hits])
    return float(recall_at_k(got, gt, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fsync", default="batch", choices=["batch", "off"])
    ap.add_argument("--out", default="bench/results/crash-test.json")
    ap.add_argument("--writer", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ops", action="store_true", help="also kill during directory operations")
    ap.add_argument(
        "--reset-every", type=int, default=0, help="start a fresh directory every N trials"
    )
    args = ap.parse_args()
    if args.writer:
        run_writer(args.writer, args.start, args.fsync, args.ops)
        return
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    model = Model()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(args.trials):
            if args.reset_every and t and t % args.reset_every == 0:
                model = Model()  # a fresh directory: bounds the collection's size
            db_dir = Path(tmp) / f"db{t // args.reset_every if args.reset_every else 0}"
            rec = trial(db_dir, model, rng, args.fsync, args.ops)
            records.append(rec)
            print(f"trial {t + 1}/{args.trials}: {rec}", flush=True)
    failed = [r for r in records if r["failures"]]
    if args.ops:
        summary = {
            "command": "python -m bench.measure.crash_test " + " ".join(sys.argv[1:]),
            "trials": len(records),
            "failed_trials": len(failed),
            "unopenable": sum(r["unopenable"] for r in records),
            "acknowledged_lost_checks": sum(r["lost"] for r in records),
            "stuck_names": sum(r["stuck"] for r in records),
            "kills_during": {
                op: sum(r["interrupted"] == op for r in records) for op in ("write", *OPERATIONS)
            },
            "final_points": len(model.present),
            "records": records,
        }
        Path(args.out).write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: v for k, v in summary.items() if k != "records"}, indent=1))
        sys.exit(1 if failed else 0)
    summary = {
        "command": "python -m bench.measure.crash_test " + " ".join(sys.argv[1:]),
        "trials": len(records),
        "failed_trials": len(failed),
        "final_points": len(model.present),
        "median_open_s": float(np.median([r["open_s"] for r in records])),
        "recall_recovered_min": float(np.nanmin([r["recall_recovered"] for r in records])),
        "max_gap_to_clean_open": float(
            np.nanmax([r["recall_clean_open"] - r["recall_recovered"] for r in records])
        ),
        "max_gap_to_fresh_build": float(
            np.nanmax([r["recall_fresh_build"] - r["recall_recovered"] for r in records])
        ),
        "records": records,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
