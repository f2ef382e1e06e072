"""Calls between the cluster's processes, each with a deadline: the only module besides the
actors' launcher that speaks to Ray directly.

A Ray call to an actor that died waits until Ray declares it dead (tens of seconds); every call
here instead waits at most its deadline and reports a miss as :class:`CallFailed`, so the
caller can skip that replica and go on. A domain error the remote side raised on purpose (a
:class:`~quiver.errors.QuiverError`) is re-raised as itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import ray
import ray.exceptions

from quiver.errors import QuiverError

#: The Ray namespace of the cluster's named actors unless the caller picks another.
DEFAULT_NAMESPACE = "quiver"
COORDINATOR_NAME = "quiver-coordinator"


class CallFailed(Exception):
    """A remote call missed its deadline or its actor died (``cause`` says which)."""

    def __init__(self, target: str, cause: BaseException | str) -> None:
        super().__init__(f"{target}: {cause}")
        self.target = target
        self.cause = cause


def node_actor_name(node: str) -> str:
    return f"quiver-node-{node}"


def actor(name: str, namespace: str) -> Any:
    """The handle of the named actor, or :class:`CallFailed` when it does not exist."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError as exc:
        raise CallFailed(name, exc) from exc


def unwrap(exc: BaseException) -> BaseException:
    """The domain error a remote task raised, or ``exc`` itself."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, QuiverError):
            return cause
    return exc


def gather(refs: Sequence[Any], timeout_s: float, targets: Sequence[str]) -> list[Any]:
    """Results of ``refs`` in order, waiting at most ``timeout_s`` in all; an entry is a
    :class:`CallFailed` for a missed deadline or a dead actor, or the domain error raised."""
    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    if pending:
        ray.wait(pending, num_returns=len(pending), timeout=max(0.0, timeout_s))
    out: list[Any] = []
    for ref, target in zip(refs, targets, strict=True):
        ready, _ = ray.wait([ref], timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            out.append(CallFailed(target, f"no answer within {timeout_s:.2f} s"))
            continue
        try:
            out.append(ray.get(ref))
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            out.append(CallFailed(target, exc))
        except ray.exceptions.RayTaskError as exc:
            cause = unwrap(exc)
            out.append(cause if cause is not exc else CallFailed(target, exc))
    return out


def call(ref: Any, timeout_s: float, target: str) -> Any:
    """One result (see :func:`gather`); a miss raises :class:`CallFailed`, a domain error
    raises itself."""
    (result,) = gather([ref], timeout_s, [target])
    if isinstance(result, BaseException):
        raise result
    return result
