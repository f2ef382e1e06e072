"""Fuzz the snapshot loader: mutated snapshots, checksums recomputed, restored and queried.

Two small collections (uint64 ids with tombstones; string ids with mean centering) are
snapshotted; each trial unpacks one, damages it (a bit flip or a truncation of any file, two
array files swapped in the manifest, out-of-range values written into the adjacency, degrees,
labels, live flags or codes, manifest fields set to edge values, arrays of the wrong dtype or
shape, duplicate or missing point ids, config fields changed, a file removed), recomputes every
checksum (file CRCs, the manifest's and the config's own) so that only the structural checks
can catch it, packs it again and restores it in a worker process, then searches, scrolls,
counts and reads it. Outcomes: ``rejected`` (a quiver error, nothing restored), ``loaded``
(restored and every read worked), ``unclear`` (another exception: a bug), ``crash`` (the
worker died: a segfault would show here; faulthandler prints its stack) or ``hang``.

    python -m bench.measure.fuzz_snapshots --mutations 500   # -> bench/results/fuzz-snapshots.json

A reduced run is in the test suite (tests/test_snapshot_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.paths import REPO_ROOT, RESULTS_DIR

DIM = 16
RESULTS = RESULTS_DIR / "fuzz-snapshots.json"
ARRAYS = ("codes", "adjacency", "degrees", "labels", "live", "center")
#: Seconds one restore and its reads may take before the worker counts as hung.
ITEM_TIMEOUT = 120.0


# ----------------------------------------------------------------------------- bases
def build_bases(directory: Path) -> list[Path]:
    """Snapshot two small collections; return the snapshot files."""
    import quiver

    rng = np.random.default_rng(0)
    out = []
    with quiver.Database(directory / "src") as db:
        u = db.create_collection("u", DIM, "cosine", max_degree=8, build_list_size=16)
        u.upsert(list(range(300)), rng.standard_normal((300, DIM)), [{"i": i} for i in range(300)])
        u.delete(list(range(0, 300, 7)))
        out.append(u.snapshot(directory / "u.tar"))
        s = db.create_collection("s", DIM, "l2", id_type="string", max_degree=8)
        x = rng.standard_normal((1200, DIM)) + 3.0  # offset: "auto" picks a centering
        s.upsert([f"p{i}" for i in range(1200)], x, [{"t": f"x{i}"} for i in range(1200)])
        out.append(s.snapshot(directory / "s.tar"))
    return out


# ----------------------------------------------------------------------------- resealing
def reseal(directory: Path) -> None:
    """Recompute every checksum a mutation broke: file CRCs, the manifest's, the config's."""
    from quiver.db import files
    from quiver.engine import store

    try:
        manifest = json.loads((directory / store.MANIFEST).read_text(encoding="utf-8"))
        sums = manifest.get("checksums", {})
        for name in list(sums):
            if (directory / name).is_file():
                sums[name] = store.file_checksum(directory / name)
        store.write_manifest(directory, manifest)
    except (ValueError, OSError, AttributeError, TypeError):
        pass  # a manifest the mutation made unreadable stays so
    try:
        config = json.loads((directory / files.CONFIG_FILE).read_text(encoding="utf-8"))
        (directory / files.CONFIG_FILE).write_text(json.dumps(store.seal(config, files.CONFIG_CRC)))
    except (ValueError, OSError, AttributeError, TypeError):
        pass


def _manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _array_path(directory: Path, key: str) -> Path | None:
    name = _manifest(directory)["files"].get(key)
    return None if name is None else directory / name


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file())


# ----------------------------------------------------------------------------- mutations
def bit_flip(rng: np.random.Generator, d: Path) -> str:
    path = _files(d)[rng.integers(len(_files(d)))]
    data = bytearray(path.read_bytes())
    if not data:
        return f"bit flip: {path.name} is empty"
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(data))
    return f"bit flip in {path.name}"


def truncate(rng: np.random.Generator, d: Path) -> str:
    path = _files(d)[rng.integers(len(_files(d)))]
    size = path.stat().st_size
    cut = int(rng.integers(0, max(size, 1)))
    path.write_bytes(path.read_bytes()[:cut])
    return f"truncate {path.name} to {cut} of {size}"


def swap_arrays(rng: np.random.Generator, d: Path) -> str:
    m = _manifest(d)
    keys = [k for k in ARRAYS if k in m["files"]] + ["points"]
    a, b = rng.choice(keys, 2, replace=False)
    m["files"][a], m["files"][b] = m["files"][b], m["files"][a]
    _write_manifest(d, m)
    return f"swap {a} and {b}"


def array_value(rng: np.random.Generator, d: Path) -> str:
    m = _manifest(d)
    key = str(rng.choice(["adjacency", "degrees", "labels", "live", "codes", "center"]))
    path = _array_path(d, key)
    if path is None:
        return f"no {key}"
    arr = np.load(path)
    if arr.size == 0:
        return f"{key} empty"
    n, r = int(m["count"]), int(m["params"]["max_degree"])
    edges = [-2, -1, n, n + 1, r + 1, 2**31 - 1, -(2**31), 255, 2, 10**9]
    flat = arr.reshape(-1)
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(flat.size))
        value = edges[int(rng.integers(len(edges)))]
        if np.issubdtype(arr.dtype, np.floating):
            flat[i] = [np.nan, np.inf, 1e30][int(rng.integers(3))]
        else:
            info = np.iinfo(arr.dtype)
            flat[i] = np.clip(value, info.min, info.max)
    np.save(path, arr)
    return f"{key} values set to edge values"


def manifest_field(rng: np.random.Generator, d: Path) -> str:
    m = _manifest(d)
    n = int(m["count"])
    field = str(
        rng.choice(
            ["entry_point", "count", "next_id", "dim", "generation", "rows", "max_degree",
             "metric", "centering", "build_seconds", "alpha"]
        )
    )  # fmt: skip
    value = [-2, -1, 0, n, n + 1, 10**12, "x", None, 1.5, [1], True][int(rng.integers(11))]
    if field == "rows":
        m["segments"][0]["rows"] = value
    elif field in ("max_degree", "alpha"):
        m["params"][field] = value
    else:
        m[field] = value
    _write_manifest(d, m)
    return f"manifest {field} = {value!r}"


def array_shape(rng: np.random.Generator, d: Path) -> str:
    key = str(rng.choice(["adjacency", "degrees", "labels", "live", "codes"]))
    path = _array_path(d, key)
    if path is None:
        return f"no {key}"
    arr = np.load(path)
    kind = int(rng.integers(4))
    if kind == 0:
        arr = arr.astype(np.int64 if arr.dtype != np.int64 else np.int32)
    elif kind == 1:
        arr = arr[:-1]
    elif kind == 2:
        arr = np.concatenate([arr, arr[:1]])
    else:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    np.save(path, arr)
    return f"{key} reshaped/retyped ({kind})"


def points_ids(rng: np.random.Generator, d: Path) -> str:
    path = d / _manifest(d)["files"]["points"]
    table = pq.read_table(path)
    ids = table.column("id").to_pylist()
    kind = int(rng.integers(3))
    if kind == 0 and len(ids) > 2:
        ids[-1] = ids[0]  # a duplicate id (live rows share it unless one is deleted)
        column = pa.array(ids, type=table.schema.field("id").type)
    elif kind == 1:
        ids[0] = None
        column = pa.array(ids, type=table.schema.field("id").type)
    else:
        column = pa.array([str(i) for i in ids])  # the other id type
    pq.write_table(table.set_column(0, "id", column), path)
    return f"points ids mutated ({kind})"


def config_field(rng: np.random.Generator, d: Path) -> str:
    config = json.loads((d / "collection.json").read_text())
    field = str(rng.choice(["dim", "metric", "id_type", "params"]))
    config[field] = [0, -1, 17, "l2", "string", "uint64", {}, None][int(rng.integers(8))]
    (d / "collection.json").write_text(json.dumps(config))
    return f"config {field} = {config[field]!r}"


def remove_file(rng: np.random.Generator, d: Path) -> str:
    path = _files(d)[rng.integers(len(_files(d)))]
    path.unlink()
    return f"remove {path.name}"


MUTATIONS: dict[str, Callable[[np.random.Generator, Path], str]] = {
    "bit_flip": bit_flip,
    "truncate": truncate,
    "swap_arrays": swap_arrays,
    "array_value": array_value,
    "manifest_field": manifest_field,
    "array_shape": array_shape,
    "points_ids": points_ids,
    "config_field": config_field,
    "remove_file": remove_file,
}


def mutate(base: Path, out: Path, kind: str, rng: np.random.Generator, work: Path) -> str:
    """Write ``out``: snapshot ``base`` damaged by mutation ``kind``, checksums recomputed."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with tarfile.open(base) as tar:
        tar.extractall(work, filter="data")
    what = MUTATIONS[kind](rng, work)
    reseal(work)
    with tarfile.open(out, "w") as tar:
        for path in _files(work):
            tar.add(path, arcname=path.name)
    return what


# ----------------------------------------------------------------------------- worker
def run_worker(db_dir: str) -> None:
    """Restore each snapshot named on stdin, read it, and print one outcome line per file."""
    import faulthandler

    import quiver

    faulthandler.enable()
    rng = np.random.default_rng(0)
    with quiver.Database(db_dir) as db:
        print("READY", flush=True)
        for i, line in enumerate(sys.stdin):
            name = f"m{i}"
            print(json.dumps(_restore_and_read(db, Path(line.strip()), name, rng)), flush=True)


def _restore_and_read(db: Any, file: Path, name: str, rng: np.random.Generator) -> dict:
    import quiver

    try:
        c = db.restore_snapshot(file, name)
    except quiver.QuiverError as exc:
        left = name in db.list_collections() or (db.path / "collections" / name).exists()
        return {"outcome": "rejected", "error": f"{type(exc).__name__}: {exc}"[:300],
                "left_behind": left}  # fmt: skip
    except Exception as exc:
        return {"outcome": "unclear", "error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        q = rng.standard_normal((3, c.dim)).astype(np.float32)
        c.search_batch(q, k=5)
        page, _ = c.scroll(limit=50)
        c.count()
        if page:
            c.get(page[0].id, with_vector=True)
            c.search(query_id=page[0].id, k=3)
        c.upsert([page[0].id] if page else ["z" if c.id_type == "string" else 10**6], q[:1])
        db.drop_collection(name)
    except quiver.QuiverError as exc:
        return {"outcome": "rejected_on_read", "error": f"{type(exc).__name__}: {exc}"[:300]}
    except Exception as exc:
        return {"outcome": "unclear", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"outcome": "loaded"}


class Worker:
    """A worker process fed snapshot paths; restarted when it dies or hangs."""

    def __init__(self, db_dir: Path) -> None:
        self._db_dir = db_dir
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()

    def _start(self) -> None:
        shutil.rmtree(self._db_dir, ignore_errors=True)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.measure.fuzz_snapshots", "--worker", str(self._db_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=REPO_ROOT,
        )  # fmt: skip
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, args=(self._proc, self._lines), daemon=True).start()
        if self._lines.get(timeout=300) != "READY":
            raise RuntimeError("fuzz worker failed to start")

    @staticmethod
    def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    def run(self, file: Path) -> dict:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        self._proc.stdin.write(f"{file}\n")
        self._proc.stdin.flush()
        try:
            line = self._lines.get(timeout=ITEM_TIMEOUT)
        except queue.Empty:
            self.close()
            return {"outcome": "hang"}
        if line is None:
            code = self._proc.wait()
            self._proc = None
            return {"outcome": "crash", "error": f"worker exit code {code}"}
        return json.loads(line)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def run_fuzz(mutations: int, seed: int, work: Path) -> dict:
    """Run ``mutations`` trials; return the summary (counts by outcome and by mutation)."""
    rng = np.random.default_rng(seed)
    bases = build_bases(work)
    worker = Worker(work / "db")
    records = []
    t0 = time.perf_counter()
    try:
        for i in range(mutations):
            kind = list(MUTATIONS)[i % len(MUTATIONS)]
            base = bases[int(rng.integers(len(bases)))]
            file = work / f"mutated-{i}.tar"
            what = mutate(base, file, kind, rng, work / "unpacked")
            result = worker.run(file)
            file.unlink()
            records.append({"kind": kind, "base": base.name, "mutation": what, **result})
    finally:
        worker.close()
    outcomes = Counter(r["outcome"] for r in records)
    return {
        "mutations": len(records),
        "seconds": round(time.perf_counter() - t0, 1),
        "outcomes": dict(outcomes),
        "by_kind": {
            k: dict(Counter(r["outcome"] for r in records if r["kind"] == k)) for k in MUTATIONS
        },
        "left_behind": sum(bool(r.get("left_behind")) for r in records),
        "problems": [r for r in records if r["outcome"] in ("unclear", "crash", "hang")],
        "records": records,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mutations", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run_worker(args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_fuzz(args.mutations, args.seed, Path(tmp))
    summary["command"] = "python -m bench.measure.fuzz_snapshots " + " ".join(sys.argv[1:])
    examples: dict[str, dict] = {}
    for r in summary.pop("records"):  # one example per mutation kind and outcome
        examples.setdefault(f"{r['kind']}/{r['outcome']}", r)
    summary["examples"] = examples
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "examples"}, indent=1))
    bad = summary["outcomes"].get("unclear", 0) + summary["outcomes"].get("crash", 0)
    sys.exit(1 if bad or summary["outcomes"].get("hang") or summary["left_behind"] else 0)


if __name__ == "__main__":
    main()
