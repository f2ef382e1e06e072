"""quiver on a Ray cluster: sharded, replicated collections with the database's verbs.

Needs the ``cluster`` extra (``pip install 'quiver-ann[cluster]'``); only this package
imports Ray. ``quiver.Cluster`` is this package's :class:`Cluster`, imported on first use.
"""

from quiver.cluster.cluster import Cluster, shutdown
from quiver.cluster.collection import ClusterCollection
from quiver.cluster.hashing import shard_of, stable_hash
from quiver.cluster.router import RouterOptions

__all__ = ["Cluster", "ClusterCollection", "RouterOptions", "shard_of", "shutdown", "stable_hash"]
