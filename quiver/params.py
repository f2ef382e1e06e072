"""Build and search parameters, with the reason for each default."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from quiver.errors import InvalidInputError
from quiver.validation import positive_int

#: Max out-degree R. The paper's sensitivity study on Cohere-768 gives recall@10 at ef=64 of
#: 69/88/95/97 % for R = 16/32/64/128: 64 is the knee; 128 doubles adjacency memory for 2 points.
DEFAULT_MAX_DEGREE = 64
#: Build list size L: candidates collected per inserted point. 2R, as in the paper and DiskANN.
DEFAULT_BUILD_LIST_SIZE = 128
#: RobustPrune alpha. The paper uses 1.2, but the 2-bit code distance is not a metric: a code's
#: distance to itself is 3 x its weak dimensions (about 1.7 D), so ``alpha * d(k, c) <= d(t, c)``
#: rarely holds at 1.2 and every node fills all R slots, which makes each hop cost R distances.
#: On MiniLM-WordNet-181k (bench/results/PERF.md) alpha=1.0 keeps ~30 edges per node and reaches
#: the same recall with ~20-25 % fewer code distances than 1.2 or 1.1 (62-64 edges), and builds
#: faster; 0.9 collapses to ~5 edges per node (recall@10 0.78 at ef=64).
DEFAULT_ALPHA = 1.0
#: Query list size. 64 is where text embeddings reach ~90-95 % recall@10 (DESIGN.md section 2).
DEFAULT_EF = 64


@dataclass(frozen=True)
class BuildParams:
    """Graph construction parameters (tuning advice: docs/DESIGN.md section 2)."""

    max_degree: int = DEFAULT_MAX_DEGREE
    build_list_size: int = DEFAULT_BUILD_LIST_SIZE
    alpha: float = DEFAULT_ALPHA
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= int(self.max_degree) <= 1024:
            raise InvalidInputError(f"max_degree must be in [2, 1024], got {self.max_degree}")
        if not 1 <= int(self.build_list_size) <= 100_000:
            raise InvalidInputError(
                f"build_list_size must be in [1, 100000], got {self.build_list_size}"
            )
        if not 1.0 <= float(self.alpha) <= 4.0:
            raise InvalidInputError(f"alpha must be in [1.0, 4.0], got {self.alpha}")
        if int(self.seed) < 0:
            raise InvalidInputError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, float | int]:
        """Plain-dict form, as stored in the manifest."""
        return asdict(self)


def _check_target_recall(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise InvalidInputError(f"target_recall must be a number, got {value!r}")
    if not 0.0 < float(value) <= 1.0:
        raise InvalidInputError(f"target_recall must be in (0, 1], got {value}")
    return float(value)


@dataclass(frozen=True)
class SearchParams:
    """The engine's search knobs, validated once (every interface builds one of these).

    ``k`` results per query; ``ef`` the beam width (default ``max(DEFAULT_EF, k)``; must be
    ``>= k``); ``rerank`` how many candidates get the exact float rerank (default all ``ef``;
    in ``[k, ef]``); ``target_recall`` in (0, 1], instead of ``ef``: the smallest ``ef`` whose
    calibrated recall@k reaches it (resolved by the index, see :meth:`resolve`).
    """

    k: int = 10
    ef: int | None = None
    rerank: int | None = None
    target_recall: float | None = None

    def __post_init__(self) -> None:
        k = positive_int(self.k, "k")
        object.__setattr__(self, "k", k)
        if self.target_recall is not None:
            if self.ef is not None:
                raise InvalidInputError(
                    f"give ef or target_recall, not both: got ef={self.ef}, "
                    f"target_recall={self.target_recall}"
                )
            object.__setattr__(self, "target_recall", _check_target_recall(self.target_recall))
        if self.ef is not None:
            ef = positive_int(self.ef, "ef")
            if ef < k:
                raise InvalidInputError(f"ef must be >= k: got ef={ef}, k={k}")
            object.__setattr__(self, "ef", ef)
        if self.rerank is not None:
            rerank = positive_int(self.rerank, "rerank")
            top = None if self.target_recall is not None else self.default_ef()
            if rerank < k or (top is not None and rerank > top):
                raise InvalidInputError(
                    f"rerank must be in [k, ef] = [{k}, {top if top is not None else 'ef'}], "
                    f"got {rerank}"
                )
            object.__setattr__(self, "rerank", rerank)

    def default_ef(self) -> int:
        """``ef`` when given, else ``max(DEFAULT_EF, k)``."""
        return self.ef if self.ef is not None else max(DEFAULT_EF, self.k)

    def resolve(self, ef_for_recall: Callable[[float, int], int]) -> tuple[int, int, int]:
        """``(k, ef, rerank)`` to search with; ``ef_for_recall(target, k)`` resolves a
        ``target_recall`` (the rerank depth is then capped at that ef)."""
        if self.target_recall is None:
            ef = self.default_ef()
            return self.k, ef, ef if self.rerank is None else self.rerank
        ef = max(int(ef_for_recall(self.target_recall, self.k)), self.k)
        return self.k, ef, ef if self.rerank is None else min(self.rerank, ef)
