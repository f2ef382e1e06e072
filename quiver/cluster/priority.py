"""The priority of the cluster's own processes (data nodes, coordinator)."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def set_niceness(niceness: int | None) -> None:
    """Run this process at ``niceness`` (None: leave it). Ray starts its workers at niceness 15
    (its ``worker_niceness``) so that they yield to drivers; a data node is a database server
    and must not: on a shared machine a niced node waited behind every busy process (a batch
    of 1,000 queries took 2.5-3.2 s instead of 0.10-0.18 s next to one busy job). Lowering
    niceness needs the privilege to (root, CAP_SYS_NICE or RLIMIT_NICE); without it the node
    keeps Ray's niceness and says so."""
    if niceness is None or os.getpriority(os.PRIO_PROCESS, 0) == niceness:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError as exc:
        logger.warning(
            "cluster process keeps niceness %d (could not set %d: %s); start Ray with "
            "RAY_worker_niceness=0 to run data nodes and the coordinator at normal priority",
            os.getpriority(os.PRIO_PROCESS, 0), niceness, exc,
        )  # fmt: skip
