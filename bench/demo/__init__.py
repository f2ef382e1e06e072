"""Demos: the end-to-end tour over HTTP (``make demo``) and the embedded index quick-start."""
