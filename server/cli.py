"""The ``quiver`` command: run the server, manage collections, load files, query, diagnose.

Commands that act on collections (``create``, ``load``, ``query``, ``info``, ``snapshot``) talk
to a running server when ``--url`` (or ``QUIVER_URL``) is given, and otherwise open the
database directory ``--db-dir`` (``QUIVER_DB_DIR``, default ``./quiver-db``) directly, which
only works while no server holds it. Both paths run the same code: :class:`quiver.Client` has
the :class:`quiver.Database` verbs.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import quiver
from quiver.db.request import SearchRequest

EPILOG = """\
examples:
  quiver serve --db-dir ./data                        # HTTP API on 127.0.0.1:8333
  quiver create docs --dim 384 --metric cosine
  quiver load docs embeddings.parquet --vector-column embedding --id-column doc_id
  quiver query docs --id 42 -k 5 --with-payload title,lang --offset 5
  quiver info docs --url http://127.0.0.1:8333        # the same commands against a server
  quiver snapshot create docs -o docs.snapshot

environment: QUIVER_URL, QUIVER_API_KEY, QUIVER_DB_DIR and every server setting as
QUIVER_<SETTING> (see `quiver serve --help`).
"""


class CliError(Exception):
    """A problem to report on stderr as one line, exit status 2."""


def input_file(path: Path) -> Path:
    """``path`` if it is an existing file, else a :class:`CliError` naming it."""
    if not path.exists():
        raise CliError(f"{path}: no such file")
    if not path.is_file():
        raise CliError(f"{path}: not a file")
    return path


def json_option(option: str, text: str) -> Any:
    """The value of a JSON-valued option, or a :class:`CliError` saying where it is malformed."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON ({exc.msg} at character {exc.pos})") from None


# --- targets: a server (Client) or a database directory ---------------------------------


@contextmanager
def open_target(args: argparse.Namespace) -> Iterator[Any]:
    """A :class:`quiver.Client` for ``--url``, else a :class:`quiver.Database` on ``--db-dir``."""
    if args.url:
        from quiver.client import Client, ConnectionFailedError

        try:
            with Client(args.url, api_key=args.api_key) as client:
                yield client
        except ConnectionFailedError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach the server at {args.url}: {reason}") from None
        return
    from quiver import Database

    with Database(args.db_dir) as db:
        yield db


# --- serve --------------------------------------------------------------------------------


def quiet_parallel_workers() -> None:
    """Let the Numba kernels' OpenMP workers sleep between parallel calls (unless the
    environment says otherwise).

    By default libgomp's workers spin for a while after each parallel region, waiting for the
    next; a server makes many short parallel calls (grouped queries, graph insertion), and the
    spinning takes the cores its event loop needs: a grouped search of 2 queries cost ~6x the
    CPU per query of a single search with spinning workers, and less than a single search with
    sleeping ones (bench/results/PERF.md). Must run before the first parallel kernel call
    (libgomp reads it when loaded). ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` in the
    environment are left as they are.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP server until interrupted (Ctrl-C / SIGTERM shut it down gracefully)."""
    quiet_parallel_workers()
    import uvicorn

    from quiver.server import Settings, create_app
    from quiver.server.logs import configure_logging
    from quiver.server.timeouts import uvicorn_options

    overrides = {
        key: value
        for key, value in {
            "db_dir": args.db_dir,
            "cluster": args.cluster,
            "cluster_shards": args.shards,
            "cluster_replicas": args.replicas,
            "snapshot_dir": args.snapshot_dir,
            "host": args.host,
            "port": args.port,
            "api_key": args.api_key,
            "threads": args.threads,
            "max_concurrency": args.max_concurrency,
            "fsync": args.fsync,
            "log_level": args.log_level,
            "access_log": False if args.no_access_log else None,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        **uvicorn_options(settings),
    )
    uvicorn.Server(config).run()
    return 0


# --- collections --------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    """Create an empty collection."""
    with open_target(args) as target:
        coll = target.create_collection(
            args.name,
            args.dim,
            args.metric,
            id_type=args.id_type,
            max_degree=args.max_degree,
            build_list_size=args.build_list_size,
            alpha=args.alpha,
        )
        print(json.dumps(coll.info(), indent=2, default=str))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """List the collections, or describe one."""
    with open_target(args) as target:
        if args.name is None:
            for name in sorted(target.list_collections()):
                info = target.get_collection(name).info()
                print(f"{name}\t{info['count']} points\tdim {info['dim']}\t{info['metric']}")
        else:
            print(json.dumps(target.get_collection(args.name).info(), indent=2, default=str))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Create a snapshot file of a collection, or restore one as a new collection."""
    with open_target(args) as target:
        if args.action == "create":
            out = args.output or Path(f"{args.name}-{time.strftime('%Y%m%dT%H%M%S')}.snapshot")
            path = target.get_collection(args.name).snapshot(out)
            print(f"wrote {path} ({Path(path).stat().st_size:,} bytes)")
        else:
            coll = target.restore_snapshot(input_file(args.file), args.name)
            print(f"restored {args.file} as {coll.name!r}: {coll.info()['count']} points")
    return 0


# --- load ---------------------------------------------------------------------------------


Batch = tuple[list[Any] | None, np.ndarray, list[dict[str, Any]] | None]


def read_batches(path: Path, args: argparse.Namespace) -> tuple[int, int, Iterator[Batch]]:
    """``(rows, dim, batches of (ids or None, vectors, payloads or None))`` from a file."""
    suffix = input_file(path).suffix.lower()
    if suffix == ".npy":
        return _npy_batches(path, args.batch_size)
    if suffix in (".h5", ".hdf5"):
        return _hdf5_batches(path, args)
    if suffix in (".parquet", ".pq", ".arrow", ".feather", ".ipc"):
        return _arrow_batches(path, args)
    raise CliError(f"unknown file type {suffix!r}: use .npy, .parquet, .arrow/.feather or .h5")


def _npy_batches(path: Path, batch: int) -> tuple[int, int, Iterator[Batch]]:
    vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    if vectors.ndim != 2:
        raise CliError(f"{path}: expected a 2-D array of vectors, got shape {vectors.shape}")
    it = ((None, np.asarray(vectors[i : i + batch]), None) for i in range(0, len(vectors), batch))
    return vectors.shape[0], vectors.shape[1], it


def _hdf5_batches(path: Path, args: argparse.Namespace) -> tuple[int, int, Iterator[Batch]]:
    try:
        import h5py
    except ModuleNotFoundError as exc:
        raise CliError("reading HDF5 needs h5py: pip install h5py") from exc
    f = h5py.File(path, "r")
    name = args.vector_column or "train"
    if name not in f:
        raise CliError(f"{path}: no dataset {name!r} (has {sorted(f.keys())}); use --vector-column")
    data = f[name]
    ids = f[args.id_column] if args.id_column else None
    if data.ndim != 2:
        raise CliError(f"{path}:{name}: expected a 2-D dataset, got shape {data.shape}")

    def gen() -> Iterator[Batch]:
        with f:
            for i in range(0, data.shape[0], args.batch_size):
                chunk_ids = None if ids is None else _plain_ids(ids[i : i + args.batch_size])
                yield chunk_ids, np.asarray(data[i : i + args.batch_size]), None

    return data.shape[0], data.shape[1], gen()


def _arrow_batches(path: Path, args: argparse.Namespace) -> tuple[int, int, Iterator[Batch]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vector_col = args.vector_column or "vector"
    if path.suffix.lower() in (".parquet", ".pq"):
        pfile = pq.ParquetFile(path)
        schema, rows = pfile.schema_arrow, pfile.metadata.num_rows
        batches: Iterator[pa.RecordBatch] = pfile.iter_batches(batch_size=args.batch_size)
    else:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        schema = reader.schema
        table = reader.read_all()
        rows = table.num_rows
        batches = iter(table.to_batches(max_chunksize=args.batch_size))
    if vector_col not in schema.names:
        raise CliError(f"{path}: no column {vector_col!r} (has {schema.names}); --vector-column")
    vtype = schema.field(vector_col).type
    if not pa.types.is_fixed_size_list(vtype) and not pa.types.is_list(vtype):
        raise CliError(f"{path}: column {vector_col!r} is {vtype}, not a list of floats")
    id_col = args.id_column or ("id" if "id" in schema.names else None)
    if id_col is not None and id_col not in schema.names:
        raise CliError(f"{path}: no id column {id_col!r} (has {schema.names})")
    if args.payload_columns is not None:
        payload_cols = [c for c in args.payload_columns.split(",") if c]
        missing = [c for c in payload_cols if c not in schema.names]
        if missing:
            raise CliError(f"{path}: no payload column(s) {missing} (has {schema.names})")
    else:
        payload_cols = [c for c in schema.names if c not in (vector_col, id_col)]

    def gen() -> Iterator[Batch]:
        for b in batches:
            vectors = np.asarray(b.column(vector_col).to_pylist(), dtype=np.float32)
            ids = None if id_col is None else _plain_ids(b.column(id_col).to_pylist())
            payloads = b.select(payload_cols).to_pylist() if payload_cols else None
            yield ids, vectors, payloads

    dim = vtype.list_size if pa.types.is_fixed_size_list(vtype) else -1
    return rows, dim, gen()


def _plain_ids(values: Any) -> list[Any]:
    """Ids as Python ints or strs (HDF5 gives bytes, numpy gives numpy ints)."""
    out = []
    for v in list(values):
        if isinstance(v, bytes):
            out.append(v.decode())
        elif isinstance(v, str):
            out.append(v)
        else:
            out.append(int(v))
    return out


def cmd_load(args: argparse.Namespace) -> int:
    """Upsert every row of a file into a collection, with a progress bar."""
    from tqdm import tqdm

    rows, dim, batches = read_batches(args.file, args)
    with open_target(args) as target:
        if args.create and args.name not in target.list_collections():
            if dim < 0:
                first = next(batches)
                dim = first[1].shape[1]
                batches = _chain([first], batches)
            target.create_collection(args.name, dim, args.metric, id_type=args.id_type)
        coll = target.get_collection(args.name)
        next_id = args.id_start
        t0 = time.perf_counter()
        # a server gets several batches per call: the client sends them in parallel
        remote = {"batch_size": args.batch_size} if args.url else {}
        group = _client_parallel() if args.url else 1
        with tqdm(total=rows, unit="pt", desc=f"load {args.name}", disable=args.quiet) as bar:
            for ids, vectors, payloads in _grouped(batches, group):
                if ids is None:
                    ids = list(range(next_id, next_id + len(vectors)))
                    next_id += len(vectors)
                coll.upsert(ids, vectors, payloads, **remote)
                bar.update(len(vectors))
        seconds = time.perf_counter() - t0
        rate = rows / max(seconds, 1e-9)
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"  # a few points: no "0/s"
        print(
            f"loaded {rows:,} points into {args.name!r} in {seconds:.1f} s "
            f"({shown} points/s); the collection has {coll.count():,}"
        )
    return 0


def _chain(first: list[Batch], rest: Iterator[Batch]) -> Iterator[Batch]:
    yield from first
    yield from rest


def _client_parallel() -> int:
    from quiver.client.wire import DEFAULT_PARALLEL

    return DEFAULT_PARALLEL


def _grouped(batches: Iterator[Batch], n: int) -> Iterator[Batch]:
    """``n`` consecutive batches at a time, as one (ids ``None`` if any batch has none)."""
    while group := list(itertools.islice(batches, n)):
        if len(group) == 1:
            yield group[0]
            continue
        ids = None if any(b[0] is None for b in group) else [i for b in group for i in b[0]]
        vectors = np.concatenate([b[1] for b in group])
        payloads = None
        if any(b[2] is not None for b in group):
            payloads = [p for b in group for p in (b[2] or [None] * len(b[1]))]
        yield ids, vectors, payloads


# --- query --------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace) -> int:
    """Print the nearest points of a vector, a file of vectors, or a stored point."""
    options = {
        "k": args.k,
        "ef": args.ef,
        "target_recall": args.target_recall,
        "filter": json_option("--filter", args.filter) if args.filter else None,
        "score_threshold": args.threshold,
        "offset": args.offset,
        "with_payload": args.with_payload,
    }
    with open_target(args) as target:
        coll = target.get_collection(args.name)
        if args.id is not None:
            qid: int | str = int(args.id) if coll.id_type == "uint64" else args.id
            request = SearchRequest(ids=[qid], **options)
        elif args.vector is not None:
            request = SearchRequest(vectors=json_option("--vector", args.vector), **options)
        else:
            vectors = np.load(input_file(args.vector_file), allow_pickle=False)
            request = SearchRequest(vectors=np.atleast_2d(vectors), **options)
        results = coll.query(request)
    for qi, hits in enumerate(results):
        if args.json:
            print(json.dumps([h.__dict__ for h in hits], default=str))
            continue
        if len(results) > 1:
            print(f"query {qi}:")
        for rank, h in enumerate(hits, 1):
            payload = "" if h.payload is None else "  " + json.dumps(h.payload)[:120]
            print(f"{rank:>4}  {h.score:>9.4f}  {h.id}{payload}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Predict quiver's recall on the vectors of a file (``quiver.diagnose``)."""
    from quiver.quality.diagnose import diagnose

    vectors = read_matrix(args.file, args)
    report = diagnose(
        vectors,
        args.metric,
        sample=args.sample,
        queries=args.queries,
        centering=args.centering,
        navigation=not args.no_navigation,
    )
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.summary())
    return 0


def read_matrix(path: Path, args: argparse.Namespace) -> np.ndarray:
    """All vectors of a file as one ``(n, d)`` array (``.npy`` memory-mapped)."""
    if input_file(path).suffix.lower() == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    args.batch_size = max(getattr(args, "batch_size", 0) or 0, 65_536)
    _, _, batches = read_batches(path, args)
    return np.concatenate([vectors for _, vectors, _ in batches])


# --- parser -------------------------------------------------------------------------------


def _add_target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the collections are (a server, or a directory)")
    g.add_argument(
        "--url",
        default=os.environ.get("QUIVER_URL"),
        help="a running server, e.g. http://127.0.0.1:8333 (env QUIVER_URL)",
    )
    g.add_argument(
        "--api-key",
        default=os.environ.get("QUIVER_API_KEY"),
        help="the server's API key (env QUIVER_API_KEY)",
    )
    g.add_argument(
        "--db-dir",
        type=Path,
        default=Path(os.environ.get("QUIVER_DB_DIR", "quiver-db")),
        help="without --url: open this database directory directly "
        "(env QUIVER_DB_DIR; default ./quiver-db)",
    )


def _payload_keys(text: str) -> list[str]:
    """``--with-payload a,b`` -> ["a", "b"]."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("expected comma-separated payload keys")
    return keys


def build_parser() -> argparse.ArgumentParser:
    """The ``quiver`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="quiver",
        description="quiver: a vector database whose search runs on 2-bit codes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"quiver {quiver.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="run the HTTP server",
        description="Serve the database over HTTP (REST API, OpenAPI docs at "
        "/docs). Flags override the QUIVER_* environment variables.",
    )
    p.add_argument(
        "--db-dir",
        type=Path,
        help="database directory (env QUIVER_DB_DIR; default ./quiver-db)",
    )
    p.add_argument("--snapshot-dir", type=Path, help="default: <db-dir>-snapshots")
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="serve a quiver cluster on the Ray cluster at ADDRESS ('auto', 'ray://host:port'; "
        "needs the 'cluster' extra); --db-dir is then each node's data directory",
    )
    p.add_argument("--shards", type=int, help="(--cluster) shards of a new collection (default 1)")
    p.add_argument("--replicas", type=int, help="(--cluster) replicas of each shard (default 1)")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default 8333)")
    p.add_argument(
        "--api-key",
        help="require this key in the 'api-key' header "
        "(env QUIVER_API_KEY; prefer the environment: flags show in `ps`)",
    )
    p.add_argument("--threads", type=int, help="Numba threads for batch work (default: cores)")
    p.add_argument(
        "--max-concurrency", type=int, help="index calls in flight at once (default: 2 x cores)"
    )
    p.add_argument(
        "--fsync",
        choices=["batch", "off"],
        help="'batch' (default): fsync each write before acknowledging it",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--no-access-log", action="store_true", help="don't log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("create", help="create a collection")
    p.add_argument("name", help="collection name: 1-64 of A-Z a-z 0-9 _ -")
    p.add_argument("--dim", type=int, required=True, help="vector dimension")
    p.add_argument("--metric", choices=["cosine", "ip", "l2"], default="cosine")
    p.add_argument("--id-type", choices=["uint64", "string"], default="uint64")
    p.add_argument("--max-degree", type=int, default=64, help="graph out-degree (default 64)")
    p.add_argument("--build-list-size", type=int, default=128, help="build beam (default 128)")
    p.add_argument("--alpha", type=float, default=1.0, help="RobustPrune slack (default 1.0)")
    _add_target_options(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser(
        "load",
        help="load vectors (+ ids, payloads) from .npy / Parquet / Arrow / HDF5",
        description="Upsert the rows of a file into a collection. .npy: a 2-D array, ids "
        "counted from --id-start. Parquet/Arrow: a list-of-float vector column, an optional "
        "id column, the other columns become the payload. HDF5: a 2-D dataset ('train' as in "
        "ann-benchmarks files).",
    )
    p.add_argument("name", help="collection")
    p.add_argument("file", type=Path)
    p.add_argument("--create", action="store_true", help="create the collection if missing")
    p.add_argument(
        "--metric",
        choices=["cosine", "ip", "l2"],
        default="cosine",
        help="with --create (default cosine)",
    )
    p.add_argument(
        "--id-type",
        choices=["uint64", "string"],
        default="uint64",
        help="with --create (default uint64)",
    )
    p.add_argument("--vector-column", help="vector column / HDF5 dataset (default vector/train)")
    p.add_argument("--id-column", help="id column / dataset (default: 'id' if present)")
    p.add_argument("--payload-columns", help="comma-separated (default: all other columns)")
    p.add_argument("--id-start", type=int, default=0, help="first id without an id column")
    p.add_argument("--batch-size", type=int, default=1000, help="points per upsert")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_target_options(p)
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("query", help="nearest neighbours of a vector or a stored point")
    p.add_argument("name", help="collection")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", help="query by a stored point's id (its nearest other points)")
    q.add_argument("--vector", help="query vector as JSON, e.g. '[0.1, 0.2, ...]'")
    q.add_argument("--vector-file", type=Path, help=".npy file of one or more query vectors")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--ef", type=int, help="beam width (default max(64, k))")
    p.add_argument(
        "--target-recall", type=float, help="instead of --ef: calibrated recall@k to reach"
    )
    p.add_argument("--offset", type=int, default=0, help="skip the first N results")
    p.add_argument(
        "--filter",
        help='JSON filter, e.g. \'{"must": [{"key": "lang", "match": {"value": "en"}}]}\'',
    )
    p.add_argument("--threshold", type=float, help="score threshold")
    p.add_argument(
        "--with-payload",
        nargs="?",
        const=True,
        default=False,
        type=_payload_keys,
        metavar="KEYS",
        help="print payloads (all fields, or only the comma-separated KEYS)",
    )
    p.add_argument("--json", action="store_true", help="one JSON list per query")
    _add_target_options(p)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("info", help="list collections, or describe one")
    p.add_argument("name", nargs="?", help="collection (default: list all)")
    _add_target_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("snapshot", help="create a snapshot file, or restore one")
    snap = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = snap.add_parser("create", help="write a consistent copy of a collection to one file")
    c.add_argument("name", help="collection")
    c.add_argument(
        "-o", "--output", type=Path, help="file or directory (default ./NAME-TIME.snapshot)"
    )
    _add_target_options(c)
    r = snap.add_parser("restore", help="restore a snapshot file as a new collection")
    r.add_argument("file", type=Path)
    r.add_argument("name", help="new collection name")
    _add_target_options(r)
    p.set_defaults(func=cmd_snapshot)

    if importlib.util.find_spec("quiver.quality.diagnose") is not None:
        p = sub.add_parser(
            "diagnose",
            help="predict quiver's recall on your vectors before indexing them",
            description="Sample a file of vectors (.npy / Parquet / Arrow / HDF5, as for "
            "`load`) and predict recall@10 at ef 16-256, with warnings for data that 2-bit "
            "codes don't suit (see quiver/quality/diagnose.py).",
        )
        p.add_argument("file", type=Path)
        p.add_argument("--metric", choices=["cosine", "ip", "l2"], default="cosine")
        p.add_argument(
            "--vector-column", help="vector column / HDF5 dataset (default vector/train)"
        )
        p.add_argument("--sample", type=int, default=10_000, help="rows of the navigation sample")
        p.add_argument("--queries", type=int, default=200, help="rows used as queries")
        p.add_argument("--centering", choices=["none", "mean"], default="none")
        p.add_argument(
            "--no-navigation",
            action="store_true",
            help="skip the sample graphs: code recall only (fast upper bound)",
        )
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.set_defaults(func=cmd_diagnose, id_column=None, payload_columns=None, batch_size=65_536)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quiver`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"quiver: error: {exc}", file=sys.stderr)
        return 2
    except quiver.QuiverError as exc:
        print(f"quiver: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be read or written: no traceback for that
        print(f"quiver: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
