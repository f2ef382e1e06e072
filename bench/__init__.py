"""Benchmark tooling: real-data generators and bundled data slices for quiver."""
