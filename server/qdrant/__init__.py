"""A Qdrant-compatible REST subset over the same databases, mounted under a path prefix
(``Settings.qdrant_prefix``, default ``/qdrant``), so that ``qdrant-client`` and what is built
on it (LangChain's ``QdrantVectorStore``...) work unchanged. See docs/QDRANT.md."""

from .app import create_qdrant_app, mount_qdrant

__all__ = ["create_qdrant_app", "mount_qdrant"]
