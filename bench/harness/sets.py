"""Data sets for the benchmark harness: the committed slice, registry names, or HDF5 paths.

``minilm-wordnet-21k-384-angular`` is the slice committed under ``bench/data/`` (no download,
no h5py); every other name goes to :func:`bench.harness.datasets.get_dataset`, which builds
and caches it; a path to an ann-benchmarks ``.hdf5`` file is read as is, named after its file stem.
"""

from __future__ import annotations

from pathlib import Path

from bench.harness.datasets import AnnDataset

SLICE_NAME = "minilm-wordnet-21k-384-angular"


def dataset_names() -> list[str]:
    """Every name :func:`load_dataset` knows without a path."""
    from bench.harness.datasets import REGISTRY

    return [SLICE_NAME, *sorted(REGISTRY)]


def dataset_label(spec: str) -> str:
    """Name used for result folders: the spec itself, or the stem of an ``.hdf5`` path."""
    return Path(spec).stem if spec.endswith(".hdf5") else spec


def load_dataset(spec: str) -> AnnDataset:
    """Load a data set by name (the slice or a registry entry) or by ``.hdf5`` path."""
    if spec == SLICE_NAME:
        from bench.harness.bundled import load_wordnet_slice

        s = load_wordnet_slice()
        return AnnDataset(
            train=s.train,
            test=s.test,
            neighbors=s.neighbors,
            distances=s.distances,
            distance="angular",
            dimension=int(s.train.shape[1]),
        )
    if spec.endswith(".hdf5"):
        from bench.harness.datasets import read_hdf5

        if not Path(spec).is_file():
            raise FileNotFoundError(f"no such data set file: {spec}")
        return read_hdf5(spec)
    from bench.harness.datasets import get_dataset

    return get_dataset(spec)
