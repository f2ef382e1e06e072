"""The shard of a point id: ``shard_of(id, S) = stable_hash(id) % S``.

The hash must never change (a point's shard is where its data lives), so it is spelled out
here rather than borrowed from Python's ``hash`` (salted per process for strings):

* the id is encoded canonically: an unsigned integer id as ``b"u"`` followed by its 8 bytes
  little-endian, a string id as ``b"s"`` followed by its UTF-8 bytes;
* the hash is the first 8 bytes, read little-endian, of BLAKE2b with a 16-byte digest and the
  key ``b"quiver-shard-v1"`` over that encoding.

``tests/cluster/test_hashing.py`` pins golden values.
"""

from __future__ import annotations

import hashlib
from typing import Any

from quiver.errors import InvalidInputError

HASH_KEY = b"quiver-shard-v1"


def id_bytes(pid: Any) -> bytes:
    """The canonical byte encoding of a point id (see the module doc)."""
    if isinstance(pid, str):
        return b"s" + pid.encode("utf-8")
    if isinstance(pid, bool) or not hasattr(pid, "__index__"):
        raise InvalidInputError(
            f"a point id is an unsigned integer or a string, got {type(pid).__name__} {pid!r}"
        )
    value = int(pid)
    if not 0 <= value < 1 << 64:
        raise InvalidInputError(f"an integer point id must be in [0, 2**64), got {value}")
    return b"u" + value.to_bytes(8, "little")


def stable_hash(pid: Any) -> int:
    """A 64-bit hash of a point id that is the same in every process and version."""
    digest = hashlib.blake2b(id_bytes(pid), digest_size=16, key=HASH_KEY).digest()
    return int.from_bytes(digest[:8], "little")


def shard_of(pid: Any, shards: int) -> int:
    """The shard (``0 <= shard < shards``) that holds point ``pid``."""
    if shards < 1:
        raise InvalidInputError(f"shards must be >= 1, got {shards}")
    return stable_hash(pid) % shards


def group_by_shard(ids: list[Any], shards: int) -> dict[int, list[int]]:
    """Positions of ``ids`` per shard, in their order (shards without ids are left out)."""
    groups: dict[int, list[int]] = {}
    for position, pid in enumerate(ids):
        groups.setdefault(shard_of(pid, shards), []).append(position)
    return groups
