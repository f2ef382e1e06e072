"""quiver's benchmarks: harness, measurement scripts, data generators, experiments, demo.

See ``bench/README.md`` for the layout and its rules.
"""
