"""The database: collections of points (ids, payloads, vectors), the write-ahead log, filters,
the filtered-search planner, checkpoints and snapshots. Built on the public Index."""
