"""Saving and opening an index directory: the manifest, the hot arrays, the float segments.

Layout of a saved index (``<key>-g<generation>`` names; published files never change)::

    manifest.json              what is current: generation, counts, params, files, CRC-32s
    codes-gN.npy ...           hot arrays (codes, adjacency, degrees, labels, live[, center,
                               rotation]), CRC-32 checked as they load
    vectors-gN-i.arrow         float32 segments (Arrow IPC, memory-mapped)

The manifest is written last (atomically), so a crash leaves the previous generation whole.
A caller may attach files of its own (written and fsynced beforehand) that switch with the
index in the same manifest: the database layer's points file and log position.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from quiver.engine import store, validate
from quiver.errors import CorruptIndexError, QuiverError

#: Manifest file keys that hold the index's own arrays (any other key is a caller's file).
ARRAY_KEYS = ("codes", "adjacency", "degrees", "labels", "live", "center", "rotation")


def next_generation(index: Any, directory: Path) -> int:
    """The generation the next save of ``index`` into ``directory`` writes."""
    try:
        previous = store.read_manifest(directory)["generation"]
    except (FileNotFoundError, ValueError, KeyError):
        previous = 0
    return max(previous, index.generation) + 1


def _write_segments(index: Any, directory: Path, gen: int, checksums: dict[str, int]) -> tuple:
    """Write the in-memory float segments (and copy foreign ones); return the manifest's
    segment list and the ``(i, view, file)`` of every segment now backed by a new file."""
    segments, written = [], []
    for i, (view, src) in enumerate(zip(index.segments.views, index.segments.files, strict=True)):
        if src is not None and src.parent.resolve() == directory.resolve():
            name = src.name
            crc = index._checksums.get(name)
        else:
            name = f"vectors-g{gen}-{i}.arrow"
            if src is None:
                crc = store.write_segment(directory / name, view)
            else:
                shutil.copyfile(src, directory / name)
                crc = index._checksums.get(src.name)
            written.append((i, directory / name))
        checksums[name] = store.file_checksum(directory / name) if crc is None else crc
        segments.append({"file": name, "rows": int(view.shape[0])})
    return segments, written


def save_index(
    index: Any,
    directory: Path,
    *,
    attached_files: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Write ``index`` to ``directory`` (created if needed), crash-safely; return the
    generation written.

    Float vectors added since the last save go to a new Arrow segment; existing segments are
    kept (or copied when saving elsewhere). ``attached_files`` (key -> file name, already
    written and fsynced in ``directory``, named ``<key>-g<generation>.<ext>``) and ``metadata``
    (JSON) are published in the same manifest, so a caller's files switch atomically with the
    index.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with index._write_lock:
        gen = next_generation(index, directory)
        checksums: dict[str, int] = {}
        segments, written = _write_segments(index, directory, gen, checksums)
        coding = index.coding
        arrays = index.hot.trimmed()
        if coding.center is not None:
            arrays["center"] = coding.center
        if coding.rotation is not None:
            arrays["rotation"] = coding.rotation
        files = {}
        for key, arr in arrays.items():
            files[key] = f"{key}-g{gen}.npy"
            checksums[files[key]] = store.save_array(directory / files[key], arr)
        for name in (attached_files or {}).values():
            checksums[name] = store.file_checksum(directory / name)
        h = index.hot
        manifest = {
            "format_version": store.FORMAT_VERSION,
            "generation": gen,
            "dim": index.dim,
            "metric": index.metric,
            "count": h.count,
            "entry_point": int(h.entry),
            "next_id": int(h.next_id),
            "build_seconds": index._build_seconds,
            "params": index.params.to_dict(),
            "vectors_normalized": index.metric == "cosine",
            "segments": segments,
            "files": {**files, **(attached_files or {})},
            "checksums": checksums,
            "metadata": metadata or {},
            "centering": coding.centering,
            **index.manifest_extras(),
        }
        store.write_manifest(directory, manifest)
        store.remove_unreferenced(directory, manifest)
        index._generation = gen
        index._path = directory
        index._checksums = checksums
        # swap written in-memory vectors for their memory-mapped files
        index.segments.mark_written(
            [(i, store.open_segment(file, index.dim), file) for i, file in written]
        )
        index.apply_float_access()  # publishes; new files may change the "auto" choice
        return gen


def _check_manifest_layout(directory: Path, manifest: dict[str, Any]) -> None:
    """The manifest's file lists are well formed and name plain files of ``directory``."""
    files, segments = manifest.get("files"), manifest.get("segments")
    if not isinstance(files, dict) or not isinstance(segments, list):
        raise CorruptIndexError(f"{directory}: manifest files/segments are malformed")
    names = list(files.values())
    for seg in segments:
        if not isinstance(seg, dict) or "file" not in seg:
            raise CorruptIndexError(f"{directory}: manifest segment entry malformed: {seg!r}")
        names.append(seg["file"])
    for name in names:
        if not isinstance(name, str) or not name or Path(name).name != name or name[0] == ".":
            raise CorruptIndexError(f"{directory}: manifest names a file outside it: {name!r}")
    for key in ("codes", "adjacency", "degrees", "labels", "live"):
        if key not in files:
            raise CorruptIndexError(f"{directory}: manifest names no {key} file")
    if not isinstance(manifest.get("params"), dict):
        raise CorruptIndexError(f"{directory}: manifest params malformed")
    if not isinstance(manifest.get("metadata", {}), dict):
        raise CorruptIndexError(f"{directory}: manifest metadata malformed")


def open_index(cls: Any, directory: Path, *, num_threads: int | None, verify: bool) -> Any:
    """Open a saved index of class ``cls``: hot arrays loaded (CRC-32 checked as they load),
    float vectors memory-mapped (checked too when ``verify``), and everything checked
    structurally (:mod:`quiver.engine.validate`) before a kernel can see it."""
    manifest = store.read_manifest(directory)
    _check_manifest_layout(directory, manifest)
    files = manifest["files"]
    checksums = manifest.get("checksums", {})
    if not isinstance(checksums, dict):
        raise CorruptIndexError(f"{directory}: manifest checksums malformed")
    for key, name in files.items():
        if key not in ARRAY_KEYS:  # a caller's attached file (checked here, read by its owner)
            store.verify_checksum(directory / name, checksums.get(name))
    if verify:
        for seg in manifest["segments"]:
            store.verify_checksum(directory / seg["file"], checksums.get(seg["file"]))

    def load(key: str) -> np.ndarray:  # read once, checksum checked
        return store.load_array(directory / files[key], checksums.get(files[key]))

    params = manifest["params"]
    try:
        index = cls(
            validate.manifest_int(directory, manifest, "dim", 1),
            manifest.get("metric"),
            max_degree=params["max_degree"],
            build_list_size=params["build_list_size"],
            alpha=params["alpha"],
            seed=params["seed"],
            num_threads=num_threads,
            centering=manifest.get("centering", "none"),
        )
        index.load_extras(manifest)
        build_seconds = float(manifest["build_seconds"])
        generation = validate.manifest_int(directory, manifest, "generation", 0)
    except (QuiverError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CorruptIndexError):
            raise
        raise CorruptIndexError(f"{directory}: manifest parameters invalid: {exc}") from exc
    arrays = {key: load(key) for key in ARRAY_KEYS if key in files}
    arrays = validate.check_hot_arrays(directory, manifest, arrays, index.params.max_degree)
    index._center = arrays.get("center")
    index._rotation = arrays.get("rotation")
    h = index.hot
    h.codes, h.adjacency, h.degrees = arrays["codes"], arrays["adjacency"], arrays["degrees"]
    h.labels, h.live = arrays["labels"], arrays["live"]
    h.count = int(manifest["count"])
    h.n_deleted = int(h.count - np.count_nonzero(h.live))
    index.metadata = dict(manifest.get("metadata", {}))
    views = []
    for seg in manifest["segments"]:
        file = directory / seg["file"]
        if not file.is_file():
            raise CorruptIndexError(f"{directory}: segment {seg['file']} is missing")
        views.append(store.open_segment(file, index.dim))
    validate.check_segments(directory, manifest, views, h.count)
    for seg, view in zip(manifest["segments"], views, strict=True):
        index.segments.add_file(view, directory / seg["file"])
    h.entry = int(manifest["entry_point"])
    h.next_id = int(manifest["next_id"])
    index._build_seconds = build_seconds
    index._generation = generation
    index._path = directory
    index._checksums = {k: int(v) for k, v in checksums.items()}
    index.segments.refresh()
    index._scratch.resize(h.capacity)
    index._publish()
    return index
