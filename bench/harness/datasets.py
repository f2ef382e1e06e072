"""Benchmark data sets in ann-benchmarks HDF5 (``train``/``test``/``neighbors``/``distances``).

Real sets:

- ``minilm-wordnet-{50k,100k,181k}-384-angular``: MiniLM embeddings of WordNet glosses. The
  held-out queries are the same 1000 texts for every size; train sets of different sizes
  are prefixes of one seeded permutation of the remaining texts, so a smaller set is always
  a subset of a larger one.
- ``minilm-text-562k-384-angular``: the same model on the WordNet glosses (their cached
  vectors are reused) plus ~381k text passages of Debian packages (GCIDE dictionary, kernel,
  Python and Perl documentation, fortunes; see :mod:`bench.datagen.textsets`).
- ``glove6b-50-angular``: GloVe 6B 50-d word vectors (:mod:`bench.datagen.glove`).
- ``sift-images-128-euclidean``: SIFT descriptors of bundled sample images
  (:mod:`bench.datagen.sift`).

Synthetic sets (numpy only, seeded; :mod:`bench.datagen.synthetic`):
``random-sphere-100k-384-angular`` and ``lowrank-100k-384-angular``, with 1000 queries drawn
from the same distribution.

The real sets hold out 1000 rows chosen by a seeded permutation as queries (never in train).
Ground truth is the exact top-100 (``quiver.exact_search``). Everything heavy (Debian
packages, embeddings, HDF5 files) is cached under :func:`data_dir`, outside git.

CLI::

    python -m bench.harness.datasets list
    python -m bench.harness.datasets build minilm-wordnet-181k-384-angular
    python -m bench.harness.datasets build glove6b-50-angular sift-images-128-euclidean
    python -m bench.harness.datasets build all
    python -m bench.harness.datasets passages
    python -m bench.harness.datasets slice

The large text set embeds for tens of minutes on 2 cores; run it in the background at low
priority (resumable: rerun the same command after an interruption)::

    nohup nice -n 19 python -m bench.harness.datasets build minilm-text-562k-384-angular &
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.paths import DATA_DIR

log = logging.getLogger(__name__)

ENV_DATA_DIR = "QUIVER_DATA_DIR"
N_TEST = 1000
SEED = 0
K_GROUND_TRUTH = 100
DIM = 384
GLOSSES_FILE = "wordnet-glosses.parquet"
EMBEDDINGS_FILE = "minilm-wordnet-embeddings.npy"
SLICE_DIR = DATA_DIR / "minilm-wordnet-21k"
SLICE_TRAIN = 20_000
SLICE_COMMAND = "python -m bench.harness.datasets slice"
TEXT_PASSAGES_FILE = "minilm-text-passages.parquet"
TEXT_EMBEDDINGS_FILE = "minilm-text-embeddings.npy"  # the non-WordNet rows only
WORDNET_SOURCE = "wordnet-base"

# quiver metric name -> ann-benchmarks "distance" attribute
_HDF5_DISTANCE = {
    "cosine": "angular",
    "angular": "angular",
    "l2": "euclidean",
    "euclidean": "euclidean",
}


def data_dir() -> Path:
    """Cache folder for generated data: ``$QUIVER_DATA_DIR`` or ``~/.cache/quiver/datasets``."""
    env = os.environ.get(ENV_DATA_DIR)
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "quiver" / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wordnet_cache() -> Path:
    return data_dir() / "wordnet-base"


def _write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` via a temporary file, so no half-written cache file survives."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` via a temporary file, so no half-written file survives."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    tmp.replace(path)


# --------------------------------------------------------------------------- text + vectors


def wordnet_glosses() -> pa.Table:
    """The distinct WordNet gloss texts with metadata, in embedding order (cached parquet).

    Columns: text, kind, pos, lexfile, synset_offset (int64). Row i matches row i of
    :func:`minilm_embeddings`.
    """
    path = data_dir() / GLOSSES_FILE
    if not path.is_file():
        from bench.datagen.wordnet import load_glosses

        glosses = load_glosses(_wordnet_cache())
        table = pa.table(
            {
                "text": pa.array([g.text for g in glosses], pa.string()),
                "kind": pa.array([g.kind for g in glosses], pa.string()),
                "pos": pa.array([g.pos for g in glosses], pa.string()),
                "lexfile": pa.array([g.lexfile for g in glosses], pa.string()),
                "synset_offset": pa.array([g.synset_offset for g in glosses], pa.int64()),
            }
        )
        _write_parquet(path, table)
        log.info("wrote %s (%d rows)", path, table.num_rows)
    return pq.read_table(path)


def wordnet_license_text() -> str:
    """The WordNet licence notice, verbatim from the Debian package's copyright file."""
    from bench.datagen.wordnet import fetch_package, license_text

    return license_text(fetch_package(_wordnet_cache()))


def minilm_embeddings() -> np.ndarray:
    """MiniLM vectors of every gloss text, float32 (n, 384), unit norm (cached ``.npy``).

    The first call embeds all texts (minutes; resumable through per-chunk files).
    """
    texts = wordnet_glosses().column("text").to_pylist()
    path = data_dir() / EMBEDDINGS_FILE
    if path.is_file():
        vecs = np.load(path, mmap_mode="r")
        if vecs.shape == (len(texts), DIM):
            return np.asarray(vecs)
        log.warning(
            "%s has shape %s, expected %s: re-assembling", path, vecs.shape, (len(texts), DIM)
        )
    from bench.datagen.embed import embed_texts

    vecs = embed_texts(texts, cache_dir=data_dir() / "minilm-chunks")
    _save_npy(path, vecs)
    log.info("wrote %s %s", path, vecs.shape)
    return vecs


def _debian_cache() -> Path:
    return data_dir() / "debian"


def text_passages() -> pa.Table:
    """Every text of the large MiniLM text set, in embedding order (cached parquet).

    Columns: text, source (Debian package). The WordNet glosses come first, in the order of
    :func:`wordnet_glosses`, so their cached embeddings are reused; then the distinct new
    passages of :mod:`bench.datagen.textsets` (texts already among the glosses are left out).
    """
    path = data_dir() / TEXT_PASSAGES_FILE
    if not path.is_file():
        from bench.datagen.textsets import load_passages

        glosses = wordnet_glosses().column("text").to_pylist()
        passages = load_passages(_debian_cache(), exclude=glosses)
        table = pa.table(
            {
                "text": pa.array(glosses + [p.text for p in passages], pa.string()),
                "source": pa.array(
                    [WORDNET_SOURCE] * len(glosses) + [p.source for p in passages], pa.string()
                ),
            }
        )
        _write_parquet(path, table)
        log.info("wrote %s (%d rows)", path, table.num_rows)
    return pq.read_table(path)


def text_embeddings() -> np.ndarray:
    """MiniLM vectors of every :func:`text_passages` row, float32 (n, 384), unit norm.

    The WordNet rows are the cached :func:`minilm_embeddings`; only the other passages are
    embedded (tens of minutes on 2 cores the first time; resumable through per-chunk files)
    and cached as ``.npy``.
    """
    texts = text_passages().column("text").to_pylist()
    glosses = wordnet_glosses().column("text").to_pylist()
    if texts[: len(glosses)] != glosses:
        raise RuntimeError(f"{TEXT_PASSAGES_FILE} does not start with the WordNet glosses")
    wordnet = minilm_embeddings()
    texts = texts[len(glosses) :]
    path = data_dir() / TEXT_EMBEDDINGS_FILE
    new = np.load(path, mmap_mode="r") if path.is_file() else None
    if new is None or new.shape != (len(texts), DIM):
        from bench.datagen.embed import embed_texts

        new = embed_texts(texts, cache_dir=data_dir() / "minilm-chunks")
        _save_npy(path, new)
        log.info("wrote %s %s", path, new.shape)
    return np.concatenate([wordnet, np.asarray(new)], axis=0)


def split_indices(n: int, n_test: int = N_TEST, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (held-out query rows, train rows in train order).

    Train sets of any size are prefixes of the returned train order.
    """
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_test], perm[n_test:]


def ground_truth(
    train: np.ndarray, test: np.ndarray, k: int = K_GROUND_TRUTH, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (ids int64, distances float32, ascending) via ``quiver.exact_search``."""
    from quiver import exact_search

    ids, dists = exact_search(
        np.ascontiguousarray(train, dtype=np.float32),
        np.ascontiguousarray(test, dtype=np.float32),
        k,
        metric,
    )
    return np.asarray(ids, dtype=np.int64), np.asarray(dists, dtype=np.float32)


# --------------------------------------------------------------------------- HDF5


@dataclass(frozen=True, eq=False)
class AnnDataset:
    """An ann-benchmarks data set held in memory."""

    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    distance: str  # "angular" or "euclidean"
    dimension: int


def write_hdf5(
    path: Path | str,
    train: np.ndarray,
    test: np.ndarray,
    neighbors: np.ndarray,
    distances: np.ndarray,
    metric: str,
) -> None:
    """Write an ann-benchmarks file.

    ``metric`` is "cosine"/"angular" (distances 1 - cos, stored as given) or "l2"/"euclidean"
    (distances given as *squared* L2, quiver's convention and what ``exact_search`` returns;
    the plain L2 that ann-benchmarks expects is stored).
    """
    import h5py

    if metric not in _HDF5_DISTANCE:
        raise ValueError(f"metric {metric!r} has no ann-benchmarks distance")
    distance = _HDF5_DISTANCE[metric]
    dists = np.asarray(distances, dtype=np.float32)
    if distance == "euclidean":
        dists = np.sqrt(np.maximum(dists, 0.0))
    train = np.asarray(train, dtype=np.float32)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["type"] = "dense"
        f.attrs["distance"] = distance
        f.attrs["dimension"] = int(train.shape[1])
        f.attrs["point_type"] = "float"
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=np.asarray(test, dtype=np.float32))
        f.create_dataset("neighbors", data=np.asarray(neighbors, dtype=np.int64))
        f.create_dataset("distances", data=dists)
    tmp.replace(path)


def read_hdf5(path: Path | str) -> AnnDataset:
    """Read an ann-benchmarks file fully into memory."""
    import h5py

    with h5py.File(path, "r") as f:
        distance = f.attrs["distance"]
        return AnnDataset(
            train=f["train"][:],
            test=f["test"][:],
            neighbors=f["neighbors"][:],
            distances=f["distances"][:],
            distance=distance.decode() if isinstance(distance, bytes) else str(distance),
            dimension=int(f.attrs["dimension"]),
        )


# --------------------------------------------------------------------------- registry


def _built(name: str) -> Path | None:
    """The cached file of data set ``name`` if it was built before, else None."""
    path = data_dir() / f"{name}.hdf5"
    if path.is_file():
        log.info("%s already built", path)
        return path
    return None


def build_minilm_wordnet(name: str, n_train: int | None) -> Path:
    """Build (or reuse) ``data_dir()/<name>.hdf5``: ``n_train`` rows, or all when None."""
    path = _built(name)
    if path is not None:
        return path
    vecs = minilm_embeddings()
    test_idx, train_idx = split_indices(len(vecs))
    if n_train is not None:
        if n_train > len(train_idx):
            raise ValueError(f"{name}: asks {n_train} train rows, only {len(train_idx)} exist")
        train_idx = train_idx[:n_train]
    path = data_dir() / f"{name}.hdf5"
    return write_with_ground_truth(path, vecs[train_idx], vecs[test_idx], "cosine")


def write_split_set(name: str, vecs: np.ndarray, metric: str) -> Path:
    """Write ``data_dir()/<name>.hdf5`` from ``vecs``, holding out :data:`N_TEST` rows.

    The query rows and the train order come from :func:`split_indices`.
    """
    path = data_dir() / f"{name}.hdf5"
    test_idx, train_idx = split_indices(len(vecs))
    train, test = vecs[train_idx], vecs[test_idx]
    return write_with_ground_truth(path, train, test, metric)


def write_with_ground_truth(path: Path, train: np.ndarray, test: np.ndarray, metric: str) -> Path:
    """Compute exact top-:data:`K_GROUND_TRUTH` neighbours and write the ann-benchmarks file."""
    log.info("%s: exact ground truth for %d queries over %d rows", path.name, len(test), len(train))
    ids, dists = ground_truth(train, test, metric=metric)
    write_hdf5(path, train, test, ids, dists, metric)
    log.info("wrote %s", path)
    return path


def build_minilm_text(name: str) -> Path:
    """Build (or reuse) the large MiniLM text set: WordNet glosses plus Debian text passages."""
    return _built(name) or write_split_set(name, text_embeddings(), "cosine")


def build_glove(name: str) -> Path:
    """Build (or reuse) the GloVe 6B 50-d set: 1000 held-out words as queries, cosine."""
    from bench.datagen.glove import glove_vectors

    return _built(name) or write_split_set(name, glove_vectors(), "cosine")


def build_sift(name: str) -> Path:
    """Build (or reuse) the SIFT set of the bundled sample images: held-out queries, L2."""
    from bench.datagen.sift import sift_vectors

    return _built(name) or write_split_set(name, sift_vectors(), "l2")


def build_synthetic(name: str, kind: str, n_train: int) -> Path:
    """Build (or reuse) a seeded synthetic cosine set (``kind`` "sphere" or "lowrank")."""
    path = _built(name)
    if path is not None:
        return path
    from bench.datagen import synthetic

    make = {"sphere": synthetic.random_sphere, "lowrank": synthetic.lowrank}[kind]
    train, test = make(n_train, N_TEST, seed=SEED)
    return write_with_ground_truth(data_dir() / f"{name}.hdf5", train, test, "cosine")


def build_million(name: str, target_cos: float) -> Path:
    """Build (or reuse) the 1.12M set of ``bench.measure.million`` (the 562k set's train
    vectors and a noisy copy of each; its data step, resumable) as an ann-benchmarks file."""
    import argparse

    from bench.measure import million

    built = _built(name)
    if built:
        return built
    million.step_data(argparse.Namespace(target_cos=target_cos, seed=0))
    directory = million.set_dir(target_cos)
    path = data_dir() / f"{name}.hdf5"
    write_hdf5(
        path,
        np.load(directory / "train.npy", mmap_mode="r"),
        np.load(directory / "test.npy"),
        np.load(directory / "neighbors.npy"),
        np.load(directory / "distances.npy"),
        "cosine",
    )
    return path


REGISTRY: dict[str, Callable[[], Path]] = {
    "minilm-wordnet-50k-384-angular": partial(
        build_minilm_wordnet, "minilm-wordnet-50k-384-angular", 50_000
    ),
    "minilm-wordnet-100k-384-angular": partial(
        build_minilm_wordnet, "minilm-wordnet-100k-384-angular", 100_000
    ),
    # all 181,360 distinct texts: 180,360 train + the 1000 held-out queries
    "minilm-wordnet-181k-384-angular": partial(
        build_minilm_wordnet, "minilm-wordnet-181k-384-angular", None
    ),
    # 181,360 WordNet glosses + 380,711 Debian text passages = 562,071 texts (1000 of them test)
    "minilm-text-562k-384-angular": partial(build_minilm_text, "minilm-text-562k-384-angular"),
    # the 562k set's 561,071 train vectors + a noisy copy of each (cosine 0.92 to its source)
    "minilm-text-1m-noise092-384-angular": partial(
        build_million, "minilm-text-1m-noise092-384-angular", 0.92
    ),
    # 400,000 words: 399,000 train + 1000 held-out queries
    "glove6b-50-angular": partial(build_glove, "glove6b-50-angular"),
    "sift-images-128-euclidean": partial(build_sift, "sift-images-128-euclidean"),
    # 100,000 train + 1000 queries drawn from the same distribution (bench/datagen/synthetic.py)
    "random-sphere-100k-384-angular": partial(
        build_synthetic, "random-sphere-100k-384-angular", "sphere", 100_000
    ),
    "lowrank-100k-384-angular": partial(
        build_synthetic, "lowrank-100k-384-angular", "lowrank", 100_000
    ),
}


def get_dataset(name: str) -> AnnDataset:
    """Build ``name`` if needed and load it."""
    if name not in REGISTRY:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(REGISTRY)}")
    return read_hdf5(REGISTRY[name]())


# --------------------------------------------------------------------------- committed slice


def build_slice(out_dir: Path = SLICE_DIR, n_train: int = SLICE_TRAIN) -> Path:
    """Write the small committed slice: fp16 vectors, exact ground truth, texts, licence."""
    vecs = minilm_embeddings()
    meta = wordnet_glosses()
    test_idx, train_idx = split_indices(len(vecs))
    train_idx = train_idx[:n_train]
    train16 = vecs[train_idx].astype(np.float16)
    test16 = vecs[test_idx].astype(np.float16)
    # ground truth on exactly the vectors a reader sees: fp16 upcast to fp32
    ids, dists = ground_truth(train16.astype(np.float32), test16.astype(np.float32))
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "vectors.npz", train=train16, test=test16, neighbors=ids, distances=dists)
    pq.write_table(_slice_table(meta, train_idx, test_idx), out_dir / "glosses.parquet")
    (out_dir / "LICENSE-WordNet.txt").write_text(wordnet_license_text(), encoding="utf-8")
    (out_dir / "README.md").write_text(
        _slice_readme(len(train_idx), len(test_idx)), encoding="utf-8"
    )
    log.info("wrote slice to %s", out_dir)
    return out_dir


def _slice_table(meta: pa.Table, train_idx: np.ndarray, test_idx: np.ndarray) -> pa.Table:
    """Metadata rows for the slice: train rows first, then test rows."""
    rows = np.concatenate([train_idx, test_idx])
    picked = meta.take(pa.array(rows))
    split = ["train"] * len(train_idx) + ["test"] * len(test_idx)
    row = np.concatenate([np.arange(len(train_idx)), np.arange(len(test_idx))])
    return pa.table(
        {
            "split": pa.array(split, pa.string()),
            "row": pa.array(row, pa.int64()),
            "text": picked.column("text"),
            "kind": picked.column("kind"),
            "pos": picked.column("pos"),
            "lexfile": picked.column("lexfile"),
            "synset_offset": picked.column("synset_offset"),
        }
    )


def _slice_readme(n_train: int, n_test: int) -> str:
    from bench.datagen.embed import MODEL_NAME, MODEL_PACKAGE

    return f"""# minilm-wordnet-21k: a small real-data slice for tests

Sentence embeddings of WordNet 3.0 gloss texts (definitions and example sentences), for
cosine search. Made by `bench/harness/datasets.py`; regenerate from the repository root with

    {SLICE_COMMAND}

(needs the optional `data` extra: torch, {MODEL_PACKAGE}, h5py; the first run embeds all
WordNet glosses, several minutes on 2 CPU cores, and caches them under `$QUIVER_DATA_DIR`,
default `~/.cache/quiver/datasets`).

- Text: the Debian package `wordnet-base` (`usr/share/wordnet/data.{{noun,verb,adj,adv}}`);
  each gloss is split on `;` into definitions and quoted example sentences, deduplicated by
  text. Licence: `LICENSE-WordNet.txt` (WordNet 3.0 licence, verbatim from the package).
- Model: `{MODEL_NAME}` (PyPI package `{MODEL_PACKAGE}`), CPU,
  `normalize_embeddings=True`, 384 dimensions.
- Split: a `numpy.random.default_rng({SEED})` permutation of all distinct texts; its first
  {n_test} texts are the held-out queries (`test`), the next {n_train} are `train`.

Files:

- `vectors.npz` (`np.load(..., allow_pickle=False)`): `train` float16 ({n_train}, 384),
  `test` float16 ({n_test}, 384), `neighbors` int64 ({n_test}, {K_GROUND_TRUTH}) and
  `distances` float32 ({n_test}, {K_GROUND_TRUTH}): exact cosine ground truth
  (distance = 1 - cos, ascending) computed on the float16 vectors upcast to float32.
- `glosses.parquet`: one row per vector: `split` ("train"/"test"), `row` (index in its
  split), `text`, `kind` ("definition"/"example"), `pos`, `lexfile` (e.g. `noun.Tops`),
  `synset_offset` (WordNet 3.0 byte offset in `data.<pos>`).

Load with `bench.harness.bundled.load_wordnet_slice()`.
"""


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.harness.datasets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list known data set names")
    p_build = sub.add_parser("build", help="build (or reuse) data sets in the cache")
    p_build.add_argument("names", nargs="+", choices=sorted(REGISTRY) + ["all"])
    sub.add_parser("embed", help="only parse WordNet and embed every text (resumable)")
    sub.add_parser("passages", help="extract the text passages of the large text set; counts")
    p_slice = sub.add_parser("slice", help="write the committed slice")
    p_slice.add_argument("--out", type=Path, default=SLICE_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.cmd == "list":
        for name in REGISTRY:
            print(name)
    elif args.cmd == "build":
        names = list(REGISTRY) if "all" in args.names else args.names
        for name in names:
            print(REGISTRY[name]())
    elif args.cmd == "embed":
        vecs = minilm_embeddings()
        print(f"{vecs.shape[0]} vectors in {data_dir() / EMBEDDINGS_FILE}")
    elif args.cmd == "passages":
        sources = text_passages().column("source").to_pylist()
        for source in dict.fromkeys(sources):
            print(f"{sources.count(source):>8,d}  {source}")
        print(f"{len(sources):>8,d}  total in {data_dir() / TEXT_PASSAGES_FILE}")
    elif args.cmd == "slice":
        out = build_slice(args.out)
        for f in sorted(out.iterdir()):
            print(f"{f.stat().st_size:>12,d}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
