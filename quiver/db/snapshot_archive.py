"""Unpacking a snapshot file without trusting it.

A snapshot is the uncompressed tar :meth:`quiver.Collection.snapshot` writes: the collection's
config, its manifest and the files the manifest names, flat. Unpacking accepts only that: a
compressed file is refused (a small upload must not expand into a huge directory), the members
may not declare more bytes than the file holds (sparse members), their number is bounded, and
only the files a snapshot should contain are written; anything else in the tar is skipped.
Errors name the snapshot by its file name only (never a server path).
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path
from typing import Any

from quiver.engine import store
from quiver.errors import CorruptIndexError, FormatVersionError

logger = logging.getLogger(__name__)

#: Most tar members a snapshot may hold (it holds a handful plus one per vector segment).
MAX_MEMBERS = 65_536
#: Largest manifest read from a snapshot.
MAX_MANIFEST_BYTES = 16 << 20
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def extract_snapshot(file: Path, staging: Path, config_file: str) -> None:
    """Write the files of snapshot ``file`` (the collection's ``config_file``, its manifest and
    the files that names) into the empty folder ``staging``, or raise
    :class:`CorruptIndexError` (:class:`FormatVersionError` for an unknown manifest version)."""
    name = file.name
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(8)
        for magic, kind in _COMPRESSED.items():
            if head.startswith(magic):
                raise CorruptIndexError(
                    f"{name}: a {kind}-compressed file; a snapshot is the uncompressed tar "
                    "quiver writes (decompress it first)"
                )
        with tarfile.open(file, "r:") as tar:
            members = _regular_members(tar, name, size)
            for required in (config_file, store.MANIFEST):
                if required not in members:
                    raise CorruptIndexError(f"{name}: no {required} in the snapshot")
            manifest = _read_manifest(tar, members, name)
            keep = _snapshot_files(manifest, name) | {config_file}
            missing = sorted(keep - set(members))
            if missing:
                raise CorruptIndexError(
                    f"{name}: the manifest names files missing from it: {missing[:5]}"
                )
            skipped = sorted(set(members) - keep)
            if skipped:
                logger.warning("%s: skipping files a snapshot does not hold: %s", name, skipped[:5])
            tar.extractall(staging, members=[members[n] for n in sorted(keep)], filter="data")
    except (tarfile.TarError, OSError) as exc:
        if isinstance(exc, CorruptIndexError):
            raise
        raise CorruptIndexError(f"{name}: not a readable snapshot: {exc}") from exc


def _regular_members(tar: tarfile.TarFile, name: str, size: int) -> dict[str, tarfile.TarInfo]:
    """The regular files of the tar by name, checking the member count, duplicate names and
    that their sizes add up to no more than the file's own size."""
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    for count, member in enumerate(tar, 1):
        if count > MAX_MEMBERS:
            raise CorruptIndexError(f"{name}: more than {MAX_MEMBERS} files in the snapshot")
        if not member.isreg():
            continue
        if member.name.startswith("./"):  # `tar -C dir -cf file .` and shutil.make_archive
            member.name = member.name[2:]
        if member.name in members:
            raise CorruptIndexError(f"{name}: the file {member.name!r} appears twice")
        total += member.size
        if total > size:
            raise CorruptIndexError(
                f"{name}: its files declare more bytes ({total}+) than the snapshot holds ({size})"
            )
        members[member.name] = member
    return members


def _read_manifest(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str
) -> dict[str, Any]:
    """The snapshot's manifest, parsed and of the format version this quiver reads."""
    member = members[store.MANIFEST]
    if member.size > MAX_MANIFEST_BYTES:
        raise CorruptIndexError(
            f"{name}: {store.MANIFEST} is {member.size} bytes, over {MAX_MANIFEST_BYTES}"
        )
    fh = tar.extractfile(member)
    if fh is None:
        raise CorruptIndexError(f"{name}: {store.MANIFEST} is not a regular file")
    try:
        manifest = json.loads(fh.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{name}: unreadable {store.MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CorruptIndexError(f"{name}: {store.MANIFEST} is not a JSON object")
    version = manifest.get("format_version")
    if version != store.FORMAT_VERSION:
        raise FormatVersionError(
            f"{name}: its {store.MANIFEST} has index format version {version!r}; this quiver "
            f"reads version {store.FORMAT_VERSION} (was it written by a newer quiver?)"
        )
    return manifest


def _snapshot_files(manifest: dict[str, Any], name: str) -> set[str]:
    """The files a snapshot with this manifest holds: the manifest and the files it names."""
    try:
        named = {segment["file"] for segment in manifest["segments"]}
        named |= set(manifest["files"].values())
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptIndexError(f"{name}: {store.MANIFEST} lacks its file list: {exc}") from exc
    for file in named:
        if not isinstance(file, str) or not file or "/" in file or file.startswith("."):
            raise CorruptIndexError(f"{name}: {store.MANIFEST} names an invalid file {file!r}")
    return named | {store.MANIFEST}
