"""``quiver load --url`` hands the client several file batches per call (sent in parallel)."""

from __future__ import annotations

import numpy as np

from quiver.server.cli import _grouped


def test_grouped_batches_keep_ids_vectors_and_payloads_in_order() -> None:
    rng = np.random.default_rng(0)
    batches = [
        (
            [3 * b, 3 * b + 1, 3 * b + 2],
            rng.standard_normal((3, 4)),
            None if b % 2 else [{"b": b}] * 3,
        )
        for b in range(5)
    ]
    groups = list(_grouped(iter(batches), 2))
    assert [len(g[1]) for g in groups] == [6, 6, 3]
    assert groups[0][0] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(groups[1][1], np.concatenate([batches[2][1], batches[3][1]]))
    assert groups[0][2] == [{"b": 0}] * 3 + [None] * 3
    assert groups[2][2] == [{"b": 4}] * 3


def test_ids_of_a_group_stay_none_when_the_file_has_none() -> None:
    batches = [(None, np.ones((2, 4)), None), (None, np.ones((1, 4)), None)]
    (group,) = _grouped(iter(batches), 4)
    assert group[0] is None and group[1].shape == (3, 4) and group[2] is None
