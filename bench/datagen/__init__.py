"""Data generators: fetch, extract, embed or synthesise the vectors of the benchmark sets.

:mod:`bench.harness.datasets` turns their output into ann-benchmarks HDF5 files.
"""
