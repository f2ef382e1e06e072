"""Exception types raised by quiver.

Every error derives from :class:`QuiverError` and from the builtin it refines, so callers can
catch either ``quiver.QuiverError`` or the familiar ``ValueError`` / ``KeyError`` / ``OSError``.
"""

from __future__ import annotations


class QuiverError(Exception):
    """Base class of every error quiver raises on purpose."""


class InvalidInputError(QuiverError, ValueError):
    """An argument has the wrong shape, dtype, range or value; nothing was changed."""


class DuplicateIdError(QuiverError, ValueError):
    """An id to add already exists in the index, or appears twice in one batch."""


class FormatVersionError(QuiverError, ValueError):
    """A saved index was written by an unknown (usually newer) on-disk format version."""


class CorruptIndexError(QuiverError, OSError):
    """A saved index directory is missing files or its files disagree with the manifest."""


class ReadOnlyError(InvalidInputError):
    """A write to a database or collection opened read-only; nothing was changed."""


class InvalidFilterError(InvalidInputError):
    """A payload filter is malformed (unknown key, wrong shape, wrong value type)."""


class CollectionNotFoundError(QuiverError, LookupError):
    """No collection of that name exists in the database."""


class CollectionExistsError(QuiverError, ValueError):
    """A collection of that name already exists."""


class PointNotFoundError(QuiverError, LookupError):
    """No live point has that id in the collection."""


class DatabaseLockedError(QuiverError, OSError):
    """Another process (or another ``Database`` object) holds the data directory's lock."""


class StaleEpochError(QuiverError, RuntimeError):
    """A cluster write carried an older epoch than the replica has seen: the shard's primary
    changed since the writer read the shard map (refresh it and retry)."""


class ReplicaUnavailableError(QuiverError, RuntimeError):
    """A cluster replica cannot serve this call now: it is not the shard's primary, or it is
    catching up with missed writes (try another replica, or refresh the shard map)."""


class ShardUnavailableError(QuiverError, RuntimeError):
    """No in-sync replica of a cluster shard answered in time (HTTP 503)."""


#: The code naming each domain error in the HTTP API's error bodies (``{"error": code}``), most
#: specific first: the server writes them, the client turns them back into these classes.
ERROR_CODES: tuple[tuple[type[QuiverError], str], ...] = (
    (InvalidFilterError, "invalid_filter"),
    (InvalidInputError, "invalid_input"),
    (CollectionNotFoundError, "collection_not_found"),
    (PointNotFoundError, "point_not_found"),
    (CollectionExistsError, "collection_exists"),
    (DatabaseLockedError, "database_locked"),
    (ShardUnavailableError, "shard_unavailable"),
    (CorruptIndexError, "corrupt_index"),
)
