"""The cluster's parts that need no Ray: the id hash, the shard map file, the merge rules and a
shard replica's log, fencing and catch-up."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import quiver
from quiver.cluster.batching import QueryBatcher
from quiver.cluster.hashing import group_by_shard, shard_of, stable_hash
from quiver.cluster.latency import LatencyWindow
from quiver.cluster.layout import (
    ClusterLayout,
    CollectionLayout,
    ReplicaSet,
    load_layout,
    place_replicas,
    save_layout,
)
from quiver.cluster.merge import (
    RECALL_K,
    expand_hits,
    merge_compact,
    merge_hits,
    merge_pages,
    resolve_target_recall,
    shard_ef,
    shard_options,
    shard_recall_k,
    shard_rerank,
)
from quiver.cluster.replica import Op, ReplicaGapError, ShardReplica
from quiver.db.query import compact_hit_lists
from quiver.db.wal import OP_DELETE, OP_UPSERT
from quiver.types import Point, ScoredPoint

#: stable_hash must never change: a point's shard is where its data lives.
GOLDEN = {
    0: 7671691146961583722,
    1: 17942965143629915652,
    42: 9175771036472351985,
    2**64 - 1: 14908623240388622877,
    "": 5913149377792192510,
    "a": 7136988167118752073,
    "doc-1": 4566185454878555416,
    "é": 17336491169312938101,
}


def test_stable_hash_golden_values() -> None:
    assert {k: stable_hash(k) for k in GOLDEN} == GOLDEN
    assert stable_hash(np.uint64(42)) == GOLDEN[42] and stable_hash(np.int64(1)) == GOLDEN[1]
    assert stable_hash(1) != stable_hash("1")  # the type is part of the encoding


def test_stable_hash_is_the_same_in_another_process() -> None:
    code = "from quiver.cluster.hashing import stable_hash; print(stable_hash('doc-1'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == GOLDEN["doc-1"]


def test_shards_are_balanced_and_bad_ids_refused() -> None:
    counts = np.bincount([shard_of(i, 4) for i in range(8000)], minlength=4)
    assert counts.min() > 1800, counts
    groups = group_by_shard(["a", "b", "c", "d"], 3)
    assert sorted(p for g in groups.values() for p in g) == [0, 1, 2, 3]
    for bad in (-1, 2**64, 1.5, True, None):
        with pytest.raises(quiver.InvalidInputError):
            stable_hash(bad)
    with pytest.raises(quiver.InvalidInputError, match="shards"):
        shard_of(1, 0)


def test_import_quiver_does_not_import_ray() -> None:
    code = "import sys, quiver; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _layout() -> ClusterLayout:
    sets = [
        ReplicaSet(s, 1, p[0], p, list(p))
        for s, p in enumerate(place_replicas(["a", "b", "c"], 3, 2))
    ]
    coll = CollectionLayout("docs", 8, "cosine", "uint64", {"max_degree": 32}, sets, 2)
    return ClusterLayout(["a", "b", "c"], {"docs": coll}, 4)


def test_layout_round_trips_atomically(tmp_path) -> None:
    path = tmp_path / "coord" / "layout.json"
    assert load_layout(path) == ClusterLayout()
    save_layout(path, _layout())
    assert load_layout(path) == _layout()
    assert [p.name for p in path.parent.iterdir()] == ["layout.json"]  # no temp file left
    assert _layout().collections["docs"].shards[1].replicas == ["b", "c"]
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(quiver.CorruptIndexError, match="format"):
        load_layout(path)


def test_per_shard_ef_rule_and_options() -> None:
    # the default exponent 0.25 (measured on 562k points): ceil(ef / S ** 0.25)
    assert shard_ef(None, 10, 1) == 64 and shard_ef(None, 10, 4) == 46
    assert shard_ef(64, 10, 2) == 54 and shard_ef(64, 60, 8) == 60  # never below k
    assert shard_ef(64, 10, 2, exponent=0.5) == 46 and shard_ef(64, 10, 4, exponent=0.5) == 32
    assert shard_ef(100, 10, 4, exponent=0.0) == 100
    request = quiver.SearchRequest(vectors=np.ones(4), k=5, offset=3, rerank=20, ef=80)
    options = shard_options(request, 4, 0.5)
    assert options["k"] == 8 and options["ef"] == 40 and options["rerank"] == 8  # 20 / 4 < k
    assert "offset" not in options


def test_per_shard_rerank_splits_the_request_depth_over_the_shards() -> None:
    # ceil(rerank / S), at least k, at most the shard's ef; rerank defaults to the ef
    default = quiver.SearchRequest(vectors=np.ones(4))
    assert [(o["ef"], o["rerank"]) for o in (shard_options(default, s, 0.25) for s in (1, 2, 4))] \
        == [(64, 64), (54, 32), (46, 16)]  # fmt: skip
    wide = quiver.SearchRequest(vectors=np.ones(4), ef=80)
    assert shard_options(wide, 4, 0.5)["rerank"] == 20
    assert shard_rerank(None, None, 60, 2, 60) == 60  # never below k
    assert shard_rerank(100, 128, 10, 2, 40) == 40  # never above the shard's ef
    assert shard_rerank(30, 64, 10, 3, 49) == 10
    recall = shard_options(quiver.SearchRequest(vectors=np.ones(4), target_recall=0.9), 4, 0.5)
    assert recall["target_recall"] == 0.9 and "ef" not in recall and recall[RECALL_K] == 4


def test_a_shard_calibrates_target_recall_for_its_share_of_the_top_k() -> None:
    # k / S plus one binomial standard deviation, rounded up, within [1, k]
    assert [shard_recall_k(10, s) for s in (1, 2, 3, 4, 8)] == [10, 7, 5, 4, 3]
    assert shard_recall_k(1, 3) == 1 and shard_recall_k(100, 4) == 30
    asked: list[tuple[float, int]] = []

    def ef_for_recall(target: float, k: int) -> int:
        asked.append((target, k))
        return 24

    request = quiver.SearchRequest(vectors=np.ones(4), k=10, rerank=30, target_recall=0.95)
    resolved = resolve_target_recall(shard_options(request, 3, 0.5), ef_for_recall)
    assert asked == [(0.95, 5)]
    assert resolved["ef"] == 24 and resolved["rerank"] == 24 and resolved["k"] == 10
    assert "target_recall" not in resolved and RECALL_K not in resolved
    low = resolve_target_recall(shard_options(request, 3, 0.5), lambda t, k: 3)
    assert low["ef"] == 10  # never below the k the shard returns
    plain = shard_options(quiver.SearchRequest(vectors=np.ones(4), ef=40), 3, 0.5)
    assert resolve_target_recall(plain, ef_for_recall) == plain and len(asked) == 1


#: The merged calibration must reach the target itself on the test data (no slack below).
MERGED_TARGET_SLACK = 0.0


def test_merged_target_recall_meets_the_target_with_less_ef_than_the_target_per_shard(
    wordnet,
) -> None:
    from bench.measure.cluster_target_recall import merged_search, recall

    n, shards, k = 3000, 3, 10
    x, q = wordnet.train[:n], wordnet.test[:500]
    truth, _ = quiver.exact_search(x, q, k, "cosine")
    owner = np.array([shard_of(i, shards) for i in range(n)])
    rows = [np.flatnonzero(owner == s) for s in range(shards)]
    indexes = []
    for r in rows:
        index = quiver.Index(384, num_threads=1, seed=0)
        index.add(x[r])
        indexes.append(index)
    for target in (0.9, 0.95):
        options = shard_options(quiver.SearchRequest(vectors=q[:1], target_recall=target), 3, 0.5)
        merged = [resolve_target_recall(options, i.ef_for_recall)["ef"] for i in indexes]
        unchanged = [i.ef_for_recall(target, k) for i in indexes]
        got = recall(merged_search(indexes, rows, q, k, merged), truth, k)
        assert got >= target - MERGED_TARGET_SLACK, (target, got, merged)
        assert sum(merged) < sum(unchanged), (target, merged, unchanged)


def test_merge_hits_orders_by_exact_score_and_pages_by_id() -> None:
    a = [ScoredPoint(1, 0.9), ScoredPoint(4, 0.5)]
    b = [ScoredPoint(2, 0.95), ScoredPoint(3, 0.5), ScoredPoint(5, 0.1)]
    assert [h.id for h in merge_hits([a, b], 3, 0, True)] == [2, 1, 3]
    assert [h.id for h in merge_hits([a, b], 2, 1, True, exclude=1)] == [3, 4]
    assert [h.id for h in merge_hits([a, b], 2, 0, False)] == [5, 3]  # l2: smaller first
    assert merge_hits([a, b], 3, 0, True).coverage == 1.0
    partial = merge_hits([a], 3, 0, True, shards=3)  # one of three shards answered
    assert [h.id for h in partial] == [1, 4] and partial.coverage == pytest.approx(1 / 3)
    again = pickle.loads(pickle.dumps(partial))  # crosses processes with its counts
    assert again == partial and (again.shards_answered, again.shards) == (1, 3)
    pages = [([Point(1), Point(5)], 9), ([Point(2), Point(3)], None), ([Point(4)], None)]
    points, nxt = merge_pages(pages, 3)
    assert [p.id for p in points] == [1, 2, 3] and nxt == 4
    assert merge_pages([([Point(1)], None), ([], None)], 3) == ([Point(1)], None)


def _op(seq: int, epoch: int, ids: list[int], rng: np.random.Generator) -> Op:
    x = rng.standard_normal((len(ids), 8)).astype(np.float32)
    return Op(seq, epoch, OP_UPSERT, ids, [{"s": seq}] * len(ids), x)


def _replica(path, name: str = "c__s0") -> ShardReplica:
    db = quiver.Database(path / "db")
    coll = (
        db.get_collection(name) if name in db.list_collections() else db.create_collection(name, 8)
    )
    return ShardReplica(db, coll, path / "replog" / name)


def test_replica_applies_in_order_skips_repeats_refuses_gaps_and_stale_epochs(tmp_path) -> None:
    rng = np.random.default_rng(0)
    replica = _replica(tmp_path)
    replica.apply(_op(1, 1, [1, 2], rng))
    replica.apply(_op(2, 1, [3], rng))
    assert replica.apply(_op(2, 1, [99], rng)) == 2  # a retry of seq 2: skipped
    assert replica.collection.count() == 3
    with pytest.raises(ReplicaGapError, match="1 writes missed"):
        replica.apply(_op(4, 1, [4], rng))
    replica.apply(Op(3, 2, OP_DELETE, [1], None, None))  # epoch 2 adopted
    with pytest.raises(quiver.StaleEpochError, match="epoch 1"):
        replica.apply(_op(4, 1, [4], rng))
    assert (replica.last_seq, replica.epoch, replica.collection.count()) == (3, 2, 2)
    # a catch-up: the primary of epoch 3 replays a write it holds from epoch 1 (a write of an
    # earlier epoch is fenced by its sender's epoch, not its own)
    assert replica.apply(_op(4, 1, [4], rng), sender_epoch=3) == 4
    with pytest.raises(quiver.StaleEpochError, match="epoch 2"):
        replica.apply(_op(5, 2, [5], rng), sender_epoch=2)
    assert (replica.last_seq, replica.epoch, replica.collection.count()) == (4, 3, 3)
    assert [op.seq for op in replica.ops_after(1)] == [2, 3, 4]
    assert replica.epoch_at(3) == 2 and replica.epoch_at(4) == 1 and replica.epoch_at(9) is None
    replica.close()
    replica.db.close()
    again = _replica(tmp_path)  # the epoch and the log survive a restart
    assert (again.last_seq, again.last_epoch, again.epoch) == (4, 1, 3)
    assert not again.readable and not again.is_primary
    assert again.collection.count() == 3
    again.close()
    again.db.close()


def test_replica_reapplies_the_log_after_its_checkpoint(tmp_path) -> None:
    rng = np.random.default_rng(1)
    replica = _replica(tmp_path)
    for seq in range(1, 4):
        replica.apply(_op(seq, 1, [seq], rng))
    replica.checkpoint()
    replica.apply(_op(4, 1, [4, 1], rng))
    expected = {p.id: p.payload for p in replica.collection.retrieve([1, 2, 3, 4])}
    replica.close()
    replica.db.close()
    again = _replica(tmp_path)
    assert {p.id: p.payload for p in again.collection.retrieve([1, 2, 3, 4])} == expected
    assert again.collection.count() == 4
    again.close()
    again.db.close()


def test_a_replica_checkpoints_after_many_points_so_a_restart_reapplies_few(tmp_path) -> None:
    rng = np.random.default_rng(4)
    db = quiver.Database(tmp_path / "db")
    replica = ShardReplica(db, db.create_collection("c__s0", 8), tmp_path / "log", 1000, 25)
    for seq in range(1, 5):  # 4 writes of 10 points: a checkpoint after the third (30 >= 25)
        replica.apply(_op(seq, 1, list(range(seq * 10, seq * 10 + 10)), rng))
    replica.close()
    db.close()
    db = quiver.Database(tmp_path / "db")
    again = ShardReplica(db, db.get_collection("c__s0"), tmp_path / "log", 1000, 25)
    assert again.reapplied == 1 and again.last_seq == 4 and again.collection.count() == 40
    again.close()
    db.close()


def test_snapshot_catch_up_makes_an_identical_replica(tmp_path) -> None:
    rng = np.random.default_rng(2)
    primary = _replica(tmp_path / "p")
    for seq in range(1, 6):
        primary.apply(_op(seq, 1, list(range(seq * 10, seq * 10 + 10)), rng))
    follower = _replica(tmp_path / "f")
    follower.apply(_op(1, 1, [777], rng))  # whatever the follower had is replaced
    data, seq, epoch = primary.snapshot_bytes()
    follower.install_snapshot(data, seq, epoch)
    primary.apply(_op(6, 1, [1000], rng))
    for op in primary.ops_after(follower.last_seq):
        follower.apply(op)

    def everything(r: ShardReplica) -> list:
        return r.collection.scroll(limit=1000, with_vector=True)[0]

    assert everything(follower) == everything(primary)
    assert follower.last_seq == primary.last_seq == 6 and follower.epoch_at(5) == 1
    for r in (primary, follower):
        r.close()
        r.db.close()


def test_micro_batching_groups_concurrent_searches_and_keeps_each_answer() -> None:
    calls_seen: list[int] = []

    def run(vectors: np.ndarray, options: dict) -> list:
        calls_seen.append(len(vectors))
        return [[ScoredPoint(int(v[0]), float(options["k"]))] for v in vectors]

    batcher = QueryBatcher(run, window_s=0.2, max_batch=8)
    out: dict[int, list] = {}
    threads = [
        threading.Thread(
            target=lambda i=i: out.update({i: batcher.search(np.full(4, i), {"k": 3})})
        )
        for i in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {i: [ScoredPoint(i, 3.0)] for i in range(12)}
    assert sum(calls_seen) == 12 and len(calls_seen) < 12 and max(calls_seen) <= 8
    assert batcher.searches == 12 and batcher.batches == len(calls_seen)
    other = batcher.search(np.full(4, 5), {"k": 4})  # other options: a batch of its own
    assert other == [ScoredPoint(5, 4.0)] and calls_seen[-1] == 1


def test_micro_batching_lets_a_lone_client_skip_the_window() -> None:
    calls_seen: list[int] = []

    def run(vectors: np.ndarray, options: dict) -> list:
        calls_seen.append(len(vectors))
        time.sleep(0.05)  # a round trip: concurrent clients overlap inside search()
        return [[ScoredPoint(int(v[0]), 1.0)] for v in vectors]

    window = 1.0
    batcher = QueryBatcher(run, window_s=window, max_batch=64)
    t0 = time.monotonic()
    batcher.search(np.zeros(4), {})  # no history: the first group waits out the window
    assert time.monotonic() - t0 >= window * 0.9
    t0 = time.monotonic()
    for _ in range(3):  # a lone client: nobody else searched recently, so no wait
        batcher.search(np.zeros(4), {})
    assert time.monotonic() - t0 < window / 2 and batcher.expected_group() == 1

    barrier = threading.Barrier(3)

    def client(i: int) -> None:
        barrier.wait()
        batcher.search(np.full(4, i), {})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.expected_group() == 64  # concurrent searches seen: groups wait again
    t0 = time.monotonic()
    batcher.search(np.zeros(4), {})
    assert time.monotonic() - t0 >= window * 0.9 and calls_seen[-1] == 1


def test_micro_batching_hands_a_failure_to_every_waiting_search() -> None:
    def run(vectors: np.ndarray, options: dict) -> list:
        raise quiver.ShardUnavailableError("shard 0 down")

    batcher = QueryBatcher(run, window_s=0.1)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            batcher.search(np.zeros(4), {})
        except quiver.ShardUnavailableError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4


def test_the_replication_log_restarts_past_its_retention(tmp_path) -> None:
    rng = np.random.default_rng(3)
    db = quiver.Database(tmp_path / "db")
    replica = ShardReplica(db, db.create_collection("c__s0", 8), tmp_path / "replog", 3)
    for seq in range(1, 6):
        replica.apply(_op(seq, 1, [seq], rng))
    assert [op.seq for op in replica.ops_after(0)] == [1, 2, 3, 4, 5]
    replica.checkpoint()  # 5 retained > 3: the log restarts after seq 5
    assert replica.ops_after(5) == [] and replica.epoch_at(5) == 1
    assert replica.epoch_at(2) is None  # no longer retained: a follower there needs a snapshot
    replica.apply(_op(6, 2, [6], rng))
    replica.close()
    db.close()
    with quiver.Database(tmp_path / "db") as db:
        again = ShardReplica(db, db.get_collection("c__s0"), tmp_path / "replog", 3)
        assert (again.last_seq, again.last_epoch) == (6, 2)
        assert [op.seq for op in again.ops_after(5)] == [6]
        assert again.collection.count() == 6
        again.close()


@pytest.mark.parametrize("higher", [True, False])
def test_compact_merge_equals_the_hit_list_merge(higher: bool) -> None:
    """The array merge gives the same hits in the same order as merge_hits: ties on score
    broken by id, the query point left out, offsets, shards with fewer hits than k or none."""
    rng = np.random.default_rng(3)
    shards, n_queries, k = 3, 40, 10
    per_shard = []
    for s in range(shards):
        hits = []
        for _ in range(n_queries):
            m = int(rng.integers(0, k + 3))
            ids = rng.choice(np.arange(s, 300, shards, dtype=np.uint64), m, replace=False)
            ids[: m // 3] += np.uint64(3 << 62)  # large ids (above int64) too; shards disjoint
            scores = np.round(rng.random(m), 1).astype(np.float32)  # many ties
            order = np.lexsort((ids, -scores if higher else scores))
            hits.append([ScoredPoint(int(ids[i]), float(scores[i])) for i in order])
        per_shard.append(hits)
    excludes = [per_shard[0][q][0].id if q % 2 and per_shard[0][q] else None
                for q in range(n_queries)]  # fmt: skip
    parts = [compact_hit_lists(h) for h in per_shard]
    assert all(expand_hits(p) == h for p, h in zip(parts, per_shard, strict=True))
    for offset in (0, 3):
        got = merge_compact(parts, k, offset, higher, excludes, shards + 1)
        for q in range(n_queries):
            want = merge_hits([h[q] for h in per_shard], k, offset, higher, excludes[q], shards + 1)
            assert got[q] == want and (got[q].shards_answered, got[q].shards) == (shards, 4)


def test_latency_window_p95_waits_for_samples_and_follows_new_ones() -> None:
    """The hedge delay: no p95 from under 20 samples, then the p95 of the last 200, refreshed
    within ``refresh`` new samples (not recomputed on every read)."""
    window = LatencyWindow(size=200, refresh=16)
    for _ in range(19):
        window.add(0.001)
    assert window.p95() is None
    window.add(0.001)
    assert window.p95() == pytest.approx(0.001)
    for _ in range(200):  # the window now holds only slow reads
        window.add(0.050)
    assert window.p95() == pytest.approx(0.050)
    for _ in range(15):  # fewer than ``refresh`` new samples: the cached value stands
        window.add(1.0)
    assert window.p95() == pytest.approx(0.050)
    window.add(1.0)  # the 16th: recomputed over the last 200 (16 of them at 1 s)
    assert window.p95() == pytest.approx(float(np.percentile([0.050] * 184 + [1.0] * 16, 95)))
