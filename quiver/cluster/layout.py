"""The cluster's shard map: which node holds which replica of which shard, who is primary, and
the epoch that fences each replica set. Owned by the coordinator and persisted atomically.

A collection of ``S`` shards and ``R`` replicas has ``S`` replica sets. Each has an ``epoch``
(raised whenever its primary or its in-sync set changes: a write stamped with an older epoch is
refused by the replicas), a ``primary`` node, its ``replicas`` (node names, primary included)
and ``in_sync``: the replicas that hold every acknowledged write (reads go only to those).

The file is JSON, written to a temporary file, fsynced, renamed over the old one, and the
directory fsynced: a crash leaves the old map or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quiver.engine.store import fsync_dir
from quiver.errors import CorruptIndexError

LAYOUT_VERSION = 1


@dataclass
class ReplicaSet:
    """One shard's replicas (node names), its primary and the in-sync ones, at an epoch."""

    shard: int
    epoch: int
    primary: str
    replicas: list[str]
    in_sync: list[str]

    def readable(self) -> list[str]:
        """Replicas a read may go to: the in-sync ones, primary first."""
        return [self.primary] + [r for r in self.in_sync if r != self.primary]


@dataclass
class CollectionLayout:
    """A sharded collection: its creation arguments and one replica set per shard."""

    name: str
    dim: int
    metric: str
    id_type: str
    build: dict[str, Any]
    shards: list[ReplicaSet]
    replicas: int = 1

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionLayout:
        return cls(**{**d, "shards": [ReplicaSet(**s) for s in d["shards"]]})


@dataclass
class ClusterLayout:
    """Every collection's layout plus the known nodes; ``version`` grows with each change."""

    nodes: list[str] = field(default_factory=list)
    collections: dict[str, CollectionLayout] = field(default_factory=dict)
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LAYOUT_VERSION,
            "version": self.version,
            "nodes": list(self.nodes),
            "collections": {n: asdict(c) for n, c in self.collections.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterLayout:
        if d.get("format") != LAYOUT_VERSION:
            raise CorruptIndexError(
                f"shard map format {d.get('format')!r} is unknown (expected {LAYOUT_VERSION})"
            )
        return cls(
            nodes=list(d["nodes"]),
            collections={n: CollectionLayout.from_dict(c) for n, c in d["collections"].items()},
            version=int(d["version"]),
        )


def save_layout(path: Path, layout: ClusterLayout) -> None:
    """Write ``layout`` to ``path`` atomically (temp file, fsync, rename, fsync directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(layout.to_dict(), fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def load_layout(path: Path) -> ClusterLayout:
    """The layout saved at ``path``; an empty one when there is no file yet."""
    if not path.is_file():
        return ClusterLayout()
    try:
        return ClusterLayout.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptIndexError(f"{path}: unreadable shard map: {exc}") from exc


def place_replicas(nodes: list[str], shards: int, replicas: int) -> list[list[str]]:
    """Replica nodes of each shard, spread round-robin (shard ``s`` starts at node ``s``);
    the first of each list is the primary."""
    return [[nodes[(s + r) % len(nodes)] for r in range(replicas)] for s in range(shards)]
