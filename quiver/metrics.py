"""Distance metrics: names, aliases and their definitions.

quiver reports distances where smaller means closer, with the conventions of hnswlib and FAISS:

========  ==================  ==============================================
metric    distance            notes
========  ==================  ==============================================
cosine    ``1 - cos(q, x)``   vectors are stored unit-normalised
ip        ``-dot(q, x)``      maximum inner product search
l2        ``||q - x||^2``     squared Euclidean distance
========  ==================  ==============================================
"""

from __future__ import annotations

from enum import IntEnum

from quiver.errors import InvalidInputError


class Metric(IntEnum):
    """Metric codes, as passed to the Numba kernels (an ``int`` there)."""

    COSINE = 0
    IP = 1
    L2 = 2


_ALIASES = {
    "cosine": Metric.COSINE,
    "angular": Metric.COSINE,
    "cos": Metric.COSINE,
    "ip": Metric.IP,
    "dot": Metric.IP,
    "inner_product": Metric.IP,
    "l2": Metric.L2,
    "euclidean": Metric.L2,
}

METRIC_NAMES = {Metric.COSINE: "cosine", Metric.IP: "ip", Metric.L2: "l2"}


def parse_metric(metric: str | Metric) -> Metric:
    """Return the :class:`Metric` for a name such as ``"cosine"``, ``"ip"`` or ``"l2"``."""
    if isinstance(metric, Metric):
        return metric
    key = str(metric).lower()
    if key not in _ALIASES:
        raise InvalidInputError(
            f"unknown metric {metric!r}: expected one of 'cosine', 'ip', 'l2' "
            f"(aliases: {', '.join(sorted(k for k in _ALIASES if k not in METRIC_NAMES.values()))})"
        )
    return _ALIASES[key]
