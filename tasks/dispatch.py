"""Sending "run task X" messages. The message carries only the id: the worker claims
the row from the database, so a duplicate, late or lost message cannot run a job twice
or lose it (the sweep re-sends for jobs nobody claimed).

A job's message goes to its route's queue: a registered worker's own queue, the shared
queue (embedded mode), or, for a job routed to a remote GPU server, the forwarding
actor's queue.

Routing is the servers app's and the actors are the apps' above this one: each installs
its part here in its AppConfig.ready() (servers: `routing` and the remote sender;
generation: the local sender), so the jobs layer never imports them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from django.db import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Destination:
    queue_name: str
    remote: bool = False


class Route(Protocol):
    """Where a new job goes: the fields it is saved with, the queue its message goes to
    (None: it waits for a server), and what its SUBMITTED event says of it."""

    @property
    def destination(self) -> Destination | None: ...

    def task_fields(self) -> dict[str, Any]: ...

    def event_data(self) -> dict[str, Any]: ...


class PlannedRoute(Route, Protocol):
    """A new job's route decided without locks, for a submit made in one statement
    (tasks.services.submit_statement): `guard()` is SQL the statement runs as one of its
    parts, which returns a row only if the decision still holds (and saves it); when it
    returns none the submit calls `lost()` and routes with `route_new_task` instead."""

    def guard(self) -> tuple[str, list[Any]]: ...

    def lost(self) -> None: ...


@dataclass(frozen=True)
class Routing:
    """What the jobs layer asks of the servers app (servers.routing, servers.selectors)."""

    # (task_type=, group=, capabilities=) -> the new job's route; inside the submit's
    # transaction, which it may lock routing in.
    route_new_task: Callable[..., Route]
    # (task_type=, group=, capabilities=) -> the new job's planned route, or None where
    # only route_new_task can route it.
    plan_new_task: Callable[..., PlannedRoute | None]
    # (task_id=) -> where a PENDING job's message goes now, or None (it waits).
    task_destination: Callable[..., Destination | None]
    # A job ended: after commit, its server's free slot may take a waiting job.
    route_waiting_on_commit: Callable[[], None]
    # The registered remote servers declaring every one of these capabilities.
    remote_servers_declaring: Callable[[Iterable[str]], list[Any]]
    # Every capability some remote server declares.
    remote_capabilities_declared: Callable[[], set[str]]


def _not_installed(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("No routing is installed: is the servers app in INSTALLED_APPS?")


routing = Routing(*[_not_installed] * 6)

# Send "run task X" to a destination's queue: (task_id, destination, delay_ms). The local
# workers' sender (remote=False) is generation's; the forwarder's (remote=True), servers'.
Sender = Callable[[str, Destination, int | None], None]
senders: dict[bool, Sender] = {}


def install_routing(installed: Routing) -> None:
    global routing
    routing = installed


def install_sender(*, remote: bool, send: Sender) -> None:
    senders[remote] = send


def route_waiting_on_commit() -> None:
    """A job ended: after commit, its server's free slot may take a waiting job."""
    routing.route_waiting_on_commit()


def dispatch_on_commit(
    *, task_id: UUID | str, destination: Destination | None = None, delay_seconds: float = 0.0
) -> None:
    # After commit: a worker must never receive an id whose row it cannot see yet.
    transaction.on_commit(lambda: dispatch_now(task_id=task_id, destination=destination, delay_seconds=delay_seconds))


def dispatch_now(*, task_id: UUID | str, destination: Destination | None = None, delay_seconds: float = 0.0) -> bool:
    """Send the job's message, delayed by `delay_seconds` (a retry's backoff) when
    given; without a known destination, route the job first (it may be waiting for a
    server, or its server may have gone)."""
    if destination is None:
        destination = routing.task_destination(task_id=task_id)
        if destination is None:
            return False
    try:
        _send(task_id=str(task_id), destination=destination, delay_ms=round(delay_seconds * 1000) or None)
    except Exception:
        # The job stays PENDING and the sweep sends again once the broker is back;
        # a submit must not fail because the broker is briefly away.
        logger.warning("could not send task %s to the broker; the sweep will retry", task_id, exc_info=True)
        from tasks.models import Task, TaskState

        Task.objects.filter(pk=task_id, state=TaskState.PENDING).update(dispatched_at=None)
        return False
    return True


def _send(*, task_id: str, destination: Destination, delay_ms: int | None) -> None:
    send = senders.get(destination.remote)
    if send is None:
        side = "remote servers'" if destination.remote else "local workers'"
        raise RuntimeError(f"No sender for the {side} queues is installed")
    send(task_id, destination, delay_ms)
