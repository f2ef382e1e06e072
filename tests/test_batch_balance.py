"""A parallel batch search balances its threads as they run (``search_batch``'s claimed
blocks): every query is searched, each exactly as on one thread, whatever the batch size, and
a block another thread already claimed is not searched again."""

from __future__ import annotations

import numpy as np
import pytest

import quiver
import quiver.engine.vamana as vamana
from quiver.engine.search import BATCH_BLOCK

DIM = 40  # not a multiple of 64


@pytest.fixture(scope="module")
def index_and_queries():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1500, DIM)).astype(np.float32)
    index = quiver.Index(DIM, "cosine", num_threads=2)
    index.add(x)
    return index, rng.standard_normal((203, DIM)).astype(np.float32)


@pytest.mark.parametrize("nq", [16, 17, 24, 31, 100, 203])
def test_two_threads_find_what_one_finds(index_and_queries, nq) -> None:
    index, queries = index_and_queries
    one = index.search(queries[:nq], k=10, ef=32, num_threads=1)
    two = index.search(queries[:nq], k=10, ef=32, num_threads=2)
    np.testing.assert_array_equal(two.ids, one.ids)
    np.testing.assert_array_equal(two.distances, one.distances)


def test_a_claimed_block_is_left_to_its_claimer(index_and_queries, monkeypatch) -> None:
    index, queries = index_and_queries
    kernel = vamana.search_batch
    calls = []

    def claim_second_block_first(*args):
        *search_args, claimed = args
        out_ids = search_args[15]
        out_ids[BATCH_BLOCK : 2 * BATCH_BLOCK] = -7  # as if another thread were on it
        claimed[1] = 1
        calls.append(claimed.shape[0])
        kernel(*search_args, claimed)
        assert claimed.all()  # every block was claimed by the end

    monkeypatch.setattr(vamana, "search_batch", claim_second_block_first)
    got = index.search(queries[:40], k=10, ef=32, num_threads=2)
    assert calls == [5]  # 40 queries in blocks of 8
    want = index.search(queries[:40], k=10, ef=32, num_threads=1)
    assert (got.ids[BATCH_BLOCK : 2 * BATCH_BLOCK] == -7).all()
    keep = np.r_[0:BATCH_BLOCK, 2 * BATCH_BLOCK : 40]
    np.testing.assert_array_equal(got.ids[keep], want.ids[keep])


def _walk(claimed: np.ndarray, own: int, slots: int, steps: int) -> list[int]:
    """Up to ``steps`` blocks thread ``own`` takes, one after another."""
    from quiver.engine.balance import NO_BLOCK, next_block

    taken, turn, b = [], 0, NO_BLOCK
    for _ in range(steps):
        block, turn, b = next_block(claimed, own, slots, turn, b)
        if block == NO_BLOCK:
            break
        taken.append(int(block))
    return taken


def test_next_block_runs_its_own_share_then_the_others_from_their_ends() -> None:
    claimed = np.zeros(10, dtype=np.uint8)  # 3 threads: shares 0-2, 3-5, 6-9
    assert _walk(claimed, 1, 3, 2) == [3, 4]  # thread 1 starts on its share
    assert _walk(claimed, 2, 3, 1) == [6]
    # thread 0 runs its share, then thread 1's rest (5), then thread 2's from the end
    assert _walk(claimed, 0, 3, 99) == [0, 1, 2, 5, 9, 8, 7]
    assert claimed.all() and _walk(claimed, 1, 3, 99) == []


@pytest.mark.parametrize(("blocks", "slots"), [(1, 1), (1, 2), (5, 2), (7, 4), (64, 3)])
def test_threads_taking_turns_claim_every_block_once(blocks, slots) -> None:
    from quiver.engine.balance import NO_BLOCK, next_block

    claimed = np.zeros(blocks, dtype=np.uint8)
    state = [(0, NO_BLOCK)] * slots
    taken: list[int] = []
    active = list(range(slots))
    rng = np.random.default_rng(blocks * 10 + slots)
    while active:  # one step of a random thread at a time
        own = int(rng.choice(active))
        block, turn, b = next_block(claimed, own, slots, *state[own])
        state[own] = (turn, b)
        if block == NO_BLOCK:
            active.remove(own)
        else:
            taken.append(int(block))
    assert sorted(taken) == list(range(blocks))
