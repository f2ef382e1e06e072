"""One router per resource: operations, collections, points, query, snapshots."""
