"""A collection's own files: its config, the points file of each checkpoint, its snapshots.

Directory of one collection::

    collection.json            name, dim, metric, id type, build params (written once), sealed
                               with ``config_crc32`` (quiver.engine.store.seal)
    manifest.json ...          the index (quiver.engine.persistence), which also names
    points-gN.parquet          the points of generation N: id, payload (JSON text), live;
                               Parquet so that DuckDB, polars or pandas read it as it is
                               (directories written before read as points-gN.arrow)
    wal/                       the write-ahead log (quiver.db.wal)

A snapshot is an uncompressed tar of the config, the manifest and the files it names.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from quiver.db.ids import ID_TYPES, MAX_STRING_ID
from quiver.db.wal import first_lsn, start_log
from quiver.engine import store
from quiver.errors import CorruptIndexError, InvalidInputError
from quiver.metrics import METRIC_NAMES, parse_metric
from quiver.params import BuildParams
from quiver.validation import positive_int

CONFIG_FILE = "collection.json"
CONFIG_CRC = "config_crc32"
WAL_DIR = "wal"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_name(name: Any) -> str:
    """``name`` if it is a valid collection name, else InvalidInputError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(f"collection name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return name


@dataclass(frozen=True)
class CollectionConfig:
    """What a collection is created with; fixed for its lifetime."""

    name: str
    dim: int
    metric: str = "cosine"
    id_type: str = "uint64"
    params: BuildParams = BuildParams()

    def __post_init__(self) -> None:
        check_name(self.name)
        positive_int(self.dim, "dim")
        object.__setattr__(self, "metric", METRIC_NAMES[parse_metric(self.metric)])
        if self.id_type not in ID_TYPES:
            raise InvalidInputError(
                f"id_type must be one of {list(ID_TYPES)}, got {self.id_type!r}"
            )

    def renamed(self, name: str) -> CollectionConfig:
        return CollectionConfig(name, self.dim, self.metric, self.id_type, self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "metric": self.metric,
            "id_type": self.id_type,
            "params": self.params.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionConfig:
        return cls(d["name"], int(d["dim"]), d["metric"], d["id_type"], BuildParams(**d["params"]))


def write_config(directory: Path, config: CollectionConfig) -> None:
    """Write (or replace) a collection's config file atomically."""
    tmp = directory / (CONFIG_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(store.seal(config.to_dict(), CONFIG_CRC), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / CONFIG_FILE)
    store.fsync_dir(directory)


def read_config(directory: Path) -> CollectionConfig:
    """The config of the collection in ``directory`` (CorruptIndexError if unreadable)."""
    path = Path(directory) / CONFIG_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path}: unreadable collection config: {exc}") from exc
    try:
        return CollectionConfig.from_dict(store.unseal(doc, CONFIG_CRC, path))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptIndexError(f"{path}: unreadable collection config: {exc}") from exc


#: Suffix of the points file a checkpoint writes.
POINTS_SUFFIX = ".parquet"


def write_points(
    path: Path, id_type: str, ids: list[Any], payloads: list[str | None], live: np.ndarray
) -> None:
    """Write the points file of a checkpoint (Parquet, fsynced): one row per index row, in
    row order (a point's current version is the row whose ``live`` is true)."""
    import pyarrow.parquet as pq  # on first use: `import quiver` stays light

    table = pa.table(
        {
            "id": pa.array(ids, type=pa.uint64() if id_type == "uint64" else pa.string()),
            "payload": pa.array(payloads, type=pa.string()),
            "live": pa.array(live.astype(bool), type=pa.bool_()),
        }
    )
    with open(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())


def read_table_file(path: Path) -> pa.Table:
    """The table of one points file (Parquet, or Arrow IPC of the first format), fully
    validated (offsets too: a crafted file must not read out of bounds)."""
    import pyarrow.parquet as pq

    try:
        if path.name.endswith(POINTS_SUFFIX):
            table = pq.read_table(path)
        else:
            with pa.memory_map(str(path), "r") as source:
                table = pa.ipc.open_file(source).read_all()
        table.validate(full=True)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CorruptIndexError(f"points file {path.name} unreadable: {exc}") from exc
    return table


def read_points(
    directory: Path, id_type: str, live: np.ndarray
) -> tuple[list[Any], list[str | None]]:
    """Ids and payload texts of the points file the manifest names, one row per index row
    (``live``: the index's live flags). Checked before use: row count, column types, ids
    valid for ``id_type`` and unique among the live rows."""
    manifest = store.read_manifest(directory)
    name = manifest["files"].get("points")
    if name is None:
        raise CorruptIndexError(f"{directory}: manifest names no points file")
    table = read_table_file(directory / name)
    rows = live.shape[0]
    if table.num_rows != rows:
        raise CorruptIndexError(f"{directory}: {name} has {table.num_rows} rows, the index {rows}")
    _check_point_columns(directory / name, table, id_type, live)
    return table.column("id").to_pylist(), table.column("payload").to_pylist()


def _check_point_columns(path: Path, table: pa.Table, id_type: str, live: np.ndarray) -> None:
    import pyarrow.compute as pc

    id_arrow = pa.uint64() if id_type == "uint64" else pa.string()
    expected = {"id": id_arrow, "payload": pa.string()}
    for column, arrow_type in expected.items():
        if column not in table.column_names or table.schema.field(column).type != arrow_type:
            raise CorruptIndexError(f"{path}: column {column!r} missing or not {arrow_type}")
    ids = table.column("id")
    if ids.null_count:
        raise CorruptIndexError(f"{path}: {ids.null_count} points have no id")
    if id_type == "string" and len(ids):
        lengths = pc.utf8_length(ids)
        low, high = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if low < 1 or high > MAX_STRING_ID:
            raise CorruptIndexError(
                f"{path}: string ids must have 1 to {MAX_STRING_ID} characters, got {low}..{high}"
            )
    live_ids = ids.filter(pa.array(live.astype(bool)))
    distinct = pc.count_distinct(live_ids).as_py()
    if distinct != len(live_ids):
        raise CorruptIndexError(
            f"{path}: {len(live_ids) - distinct} live points share an id with another"
        )


def published_files(directory: Path) -> list[str]:
    """Names of the files a snapshot of ``directory`` holds: config, manifest, what it names."""
    manifest = store.read_manifest(directory)
    names = [CONFIG_FILE, store.MANIFEST]
    return names + [s["file"] for s in manifest["segments"]] + list(manifest["files"].values())


def write_snapshot(staging: Path, names: list[str], target: Path) -> Path:
    """Write the files ``names`` of ``staging`` into the tar ``target`` (atomically)."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        with tarfile.open(tmp, "w") as tar:
            for n in names:
                tar.add(staging / n, arcname=n)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no partial snapshot left behind (full disk...)
        raise
    return target


def check_never_checkpointed(directory: Path, name: str) -> None:
    """Accept a collection directory without a manifest only if the collection never
    completed a checkpoint (its log still starts at record 1, holding every write, and only
    leftovers of an unfinished first checkpoint may lie around); otherwise its manifest was
    lost, its data files are all that is left, and nothing may treat it as new."""
    logs = sorted((directory / WAL_DIR).glob("wal-*.log"))
    if logs and first_lsn(logs[0]) == 1:
        return
    data = [p.name for p in directory.iterdir() if store.is_index_file(p.name)]
    if data or logs:
        raise CorruptIndexError(
            f"collection {name!r}: {store.MANIFEST} is missing but data files remain "
            f"({', '.join(sorted(data + [p.name for p in logs])[:5])}...): the collection is "
            "damaged; nothing was changed (restore it from a snapshot)"
        )


def prepare_restored(directory: Path) -> None:
    """Give an unpacked snapshot the log a checkpoint leaves behind (an empty file that starts
    after the checkpoint's position), so that a later lost log is detectable."""
    applied = int(store.read_manifest(directory).get("metadata", {}).get("applied_lsn", 0))
    start_log(directory / WAL_DIR, applied + 1)
