"""Snapshots of a sharded collection: one uncompressed tar holding ``manifest.json`` and one
member per shard (``shard-<s>.snapshot``, the file :meth:`quiver.Collection.snapshot` writes,
taken from that shard's primary).

Each shard's snapshot is a consistent cut of that shard (every write it acknowledged before the
cut, none after); the shards are cut one after another, so a snapshot is **not** one cut across
shards. The manifest names the collection's parameters, the shard count and each member's
SHA-256, checked before anything is restored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from quiver.engine.store import fsync_dir
from quiver.errors import CorruptIndexError

SNAPSHOT_FORMAT = 1
MANIFEST = "manifest.json"


def shard_member(shard: int) -> str:
    return f"shard-{shard}.snapshot"


def write_cluster_snapshot(path: Path, manifest: dict[str, Any], shards: list[bytes]) -> Path:
    """Write the tar at ``path`` (through a temporary file, fsynced and renamed)."""
    manifest = {
        **manifest,
        "format": SNAPSHOT_FORMAT,
        "sha256": [hashlib.sha256(data).hexdigest() for data in shards],
    }
    members = [(shard_member(s), data) for s, data in enumerate(shards)]
    members.append((MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def read_cluster_snapshot(path: str | Path) -> tuple[dict[str, Any], list[bytes]]:
    """The manifest and each shard's snapshot bytes; :class:`CorruptIndexError` when the file
    is not a cluster snapshot or a member does not match its checksum."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            manifest = json.loads(_member(tar, MANIFEST))
            if manifest.get("format") != SNAPSHOT_FORMAT:
                raise CorruptIndexError(
                    f"{path}: cluster snapshot format {manifest.get('format')!r}, expected "
                    f"{SNAPSHOT_FORMAT}"
                )
            shards = [_member(tar, shard_member(s)) for s in range(int(manifest["shards"]))]
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise CorruptIndexError(f"{path}: not a readable cluster snapshot: {exc}") from exc
    for s, data in enumerate(shards):
        if hashlib.sha256(data).hexdigest() != manifest["sha256"][s]:
            raise CorruptIndexError(f"{path}: shard {s} does not match its checksum")
    return manifest, shards


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    fh = tar.extractfile(name)
    if fh is None:
        raise KeyError(name)
    return fh.read()
