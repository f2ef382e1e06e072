"""Reproducible measurements of quiver that the docs cite, one script each.

Each writes its result under ``bench/results/`` with the command that made it. Public API only.
"""
