"""Build and search parameters, with the reason for each default."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from quiver.errors import InvalidInputError

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
    """Graph construction parameters (see ``PARAMS`` in the README for tuning advice)."""

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
