"""The benchmark harness: data sets, adapters, runner and report (``python -m bench run|report``).

Uses quiver's public API only.
"""
