"""One-off studies of quiver's internals (kernels, codes, graph layout).

They may read private names and call kernels directly, but never carry a copy of a kernel:
they time or probe the real one, so a study cannot drift from what it studies.
"""
