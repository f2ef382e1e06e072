"""The engine: 2-bit codes, Numba kernels, the Vamana graph, beam search, float rerank and
the float segments on disk. Imports only the foundation modules (errors, types, params,
metrics, validation), never the database, data-quality or interface layers."""
