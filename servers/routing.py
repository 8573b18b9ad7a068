"""Choosing a server for a job.

Every decision is saved under a lock on the load balancer's row, so decisions happen
one at a time and each sees the jobs the previous ones assigned: a server is never
given more unfinished jobs than its max_concurrent, under any algorithm. Routing passes
decide while holding the lock; a submit decides before it (plan_new_task) and saves
its decision only if no other was saved since it read the servers' loads.

A server's load is its unfinished jobs (routed and waiting in its queue, claimed, or
running). A job that finds no eligible server waits unrouted (queue "" and the reason
`waiting_for_server`); `tasks_route_waiting` routes it when a server appears or frees a
slot. With no server registered at all (embedded mode) every job goes to the shared
queue that every local worker consumes.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, IntegerField, JSONField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from backserv_site.db.compiled import CompiledRead, CompiledReads
from servers.models import Algorithm, LoadBalancer, Server, ServerKind, ServerStatus
from tasks.dispatch import Destination, dispatch_on_commit
from tasks.models import UNFINISHED_STATES, WAITING_FOR_SERVER, Task, TaskEvent, TaskState
from tasks.selectors import rows_changed

_random = random.SystemRandom()


def shared_queue_name() -> str:
    return settings.BACKSERV["QUEUE_NAME"]


@dataclass(frozen=True)
class Route:
    server: Server | None
    queue_name: str
    wait_reason: str = ""

    @property
    def destination(self) -> Destination | None:
        if not self.queue_name:
            return None
        remote = self.server is not None and self.server.kind == ServerKind.REMOTE
        return Destination(queue_name=self.queue_name, remote=remote)

    def event_data(self) -> dict[str, Any]:
        if self.server is not None:
            return {"server": self.server.name, "server_id": str(self.server.pk)}
        if self.wait_reason:
            return {"wait_reason": self.wait_reason}
        return {}

    def task_fields(self) -> dict[str, Any]:
        return {"server": self.server, "queue_name": self.queue_name, "wait_reason": self.wait_reason}


def _shared_route() -> Route:
    return Route(server=None, queue_name=shared_queue_name())


def _waiting_route() -> Route:
    return Route(server=None, queue_name="", wait_reason=WAITING_FOR_SERVER)


# The routing pass runs after every run a registered worker finishes, before its next
# one: its reads are compiled once (see backserv_site.db.compiled), as Django took
# longer to build them than Postgres to answer, and the GPU waited for that time.
_balancer_locked = CompiledRead(lambda: LoadBalancer.objects.select_for_update().filter(pk=1))


def load_balancer_locked() -> LoadBalancer:
    """The load balancer's row, locked until the current transaction ends."""
    found = _balancer_locked()
    if not found:
        LoadBalancer.objects.get_or_create(pk=1)
        found = _balancer_locked()
    return found[0]


def _servers_with_load() -> QuerySet[Server]:
    """Every server in ring order, each with its load: its unfinished jobs."""
    unfinished = (
        Task.objects.filter(server=OuterRef("pk"), state__in=UNFINISHED_STATES)
        .order_by()
        .values("server")
        .annotate(count=Count("*"))
        .values("count")
    )
    return Server.objects.order_by("name", "pk").annotate(
        load=Coalesce(Subquery(unfinished, output_field=IntegerField()), 0)
    )


_servers_with_load_read = CompiledRead(_servers_with_load)


class Router:
    """Routing decisions under the lock; call `save()` before the transaction ends."""

    def __init__(self, balancer: LoadBalancer, ring: list[Server] | None = None):
        self.balancer = balancer
        self._saved_state = json.dumps(balancer.state, sort_keys=True)
        # Offline servers stay in the ring so round-robin's position means the same
        # thing while servers come and go.
        self.ring = _servers_with_load_read() if ring is None else ring
        self.loads = {server.pk: server.load for server in self.ring}
        self.decided = 0  # how many jobs this router gave a server

    @classmethod
    def locked(cls) -> Router:
        return cls(load_balancer_locked())

    def has_capacity(self) -> bool:
        return any(self._available(server) for server in self.ring)

    def free_slots(self) -> int:
        return sum(
            server.max_concurrent - self.loads.get(server.pk, 0) for server in self.ring if self._available(server)
        )

    def _available(self, server: Server) -> bool:
        return (
            server.status == ServerStatus.ONLINE
            and not server.maintenance
            and self.loads.get(server.pk, 0) < server.max_concurrent
        )

    def eligible(self, *, task_type: str, group: str, capabilities: list[str]) -> list[Server]:
        return [
            server
            for server in self.ring
            if self._available(server)
            and server_runs(server, task_type=task_type, capabilities=capabilities)
            and (not group or group in server.groups)
        ]

    def choose(self, *, task_type: str, group: str, capabilities: list[str]) -> Server | None:
        candidates = self.eligible(task_type=task_type, group=group, capabilities=capabilities)
        if not candidates:
            return None
        algorithm = self.balancer.algorithm
        if algorithm == Algorithm.LEAST_CONNECTIONS:
            chosen = min(
                candidates,
                key=lambda server: (self.loads[server.pk], self.loads[server.pk] / server.max_concurrent),
            )
        elif algorithm == Algorithm.WEIGHTED_ROUND_ROBIN:
            chosen = self._smooth_weighted(candidates)
        elif algorithm == Algorithm.RANDOM:
            chosen = _random.choice(candidates)
        else:
            chosen = self._next_in_ring(candidates)
        self.loads[chosen.pk] += 1
        self.decided += 1
        return chosen

    def _next_in_ring(self, candidates: list[Server]) -> Server:
        last = self.balancer.state.get("last")
        ids = [str(server.pk) for server in self.ring]
        start = ids.index(last) + 1 if last in ids else 0
        wanted = {server.pk for server in candidates}
        for offset in range(len(self.ring)):
            server = self.ring[(start + offset) % len(self.ring)]
            if server.pk in wanted:
                self.balancer.state["last"] = str(server.pk)
                return server
        raise AssertionError("a candidate is always in the ring")

    def _smooth_weighted(self, candidates: list[Server]) -> Server:
        # nginx's smooth weighted round-robin: weights 2:1:1 give A B A C A B A C ...,
        # exact shares over every cycle and no bursts to the heaviest server.
        current: dict[str, int] = self.balancer.state.setdefault("weights", {})
        total = 0
        for server in candidates:
            key = str(server.pk)
            current[key] = current.get(key, 0) + server.priority
            total += server.priority
        chosen = max(candidates, key=lambda server: current[str(server.pk)])
        current[str(chosen.pk)] -= total
        return chosen

    def route(self, *, task_type: str, group: str, capabilities: list[str]) -> Route:
        server = self.choose(task_type=task_type, group=group, capabilities=capabilities)
        if server is not None:
            return Route(server=server, queue_name=server.queue_name)
        if _local_workers and not capabilities and not group:
            return _shared_route()
        return _waiting_route()

    def state_to_save(self) -> dict[str, Any]:
        """The algorithms' memory after the decisions, less departed servers' weights."""
        known = {str(server.pk) for server in self.ring}
        weights = self.balancer.state.get("weights", {})
        self.balancer.state["weights"] = {key: value for key, value in weights.items() if key in known}
        return self.balancer.state

    def save(self) -> None:
        state = self.state_to_save()
        if self.decided:
            # Counted, so a submit that decided without the lock sees it was overtaken.
            LoadBalancer.objects.filter(pk=self.balancer.pk).update(
                state=state, decisions=F("decisions") + self.decided, updated_at=timezone.now()
            )
        elif json.dumps(state, sort_keys=True) != self._saved_state:
            LoadBalancer.objects.filter(pk=self.balancer.pk).update(state=state, updated_at=timezone.now())


def server_runs(server: Server, *, task_type: str, capabilities: list[str]) -> bool:
    """Whether a server may be sent a job. A job with capabilities is of a type Back.Serv
    does not run itself: only a remote server declaring every one of them runs it."""
    if capabilities:
        return server.kind == ServerKind.REMOTE and set(capabilities) <= set(server.capabilities)
    return task_type in server.capabilities


# Whether this process belongs to a server whose own worker threads, unregistered,
# consume the shared queue (`manage.py serve`, the embedded mode): a job of ours that no
# registered server can take now (all offline, in maintenance or full) then goes to them
# rather than waiting while they idle. A fleet's workers register: there a job waits
# for a free slot. Set by serve and its GPU worker process (local_workers_present).
_local_workers = False


def local_workers_present(present: bool = True) -> None:
    global _local_workers
    _local_workers = present


def local_workers_are_present() -> bool:
    return _local_workers


def _serverless_route(capabilities: list[str]) -> Route:
    # With no server registered, local workers take every job of ours from the shared
    # queue; a job only a remote server can run waits for one.
    return _waiting_route() if capabilities else _shared_route()


@dataclass(frozen=True)
class PlannedRoute:
    """A route decided without the load balancer's lock (tasks.dispatch.PlannedRoute):
    its guard, run in the submit's own statement, returns a row only if the decision
    still holds there, and saves it."""

    route: Route
    guard_sql: str
    guard_params: tuple[Any, ...]
    serverless: bool

    @property
    def destination(self) -> Destination | None:
        return self.route.destination

    def task_fields(self) -> dict[str, Any]:
        return self.route.task_fields()

    def event_data(self) -> dict[str, Any]:
        return self.route.event_data()

    def guard(self) -> tuple[str, list[Any]]:
        return self.guard_sql, list(self.guard_params)

    def lost(self) -> None:
        """The guard returned no row: the submit falls back to routing under the lock."""
        global _servers_registered
        if self.serverless:
            _servers_registered = True  # a server registered since this process looked


# Whether this process last saw a server registered: with none (embedded mode, or a
# fleet before its first worker), a submit plans the shared queue without reading the
# servers, and its guard checks there are still none.
_servers_registered = False

# The servers with their load and the load balancer's row, in one read, unlocked.
_plan_read = CompiledRead(
    lambda: _servers_with_load().annotate(
        balancer_algorithm=Subquery(LoadBalancer.objects.filter(pk=1).values("algorithm")),
        balancer_state=Subquery(LoadBalancer.objects.filter(pk=1).values("state"), output_field=JSONField()),
        balancer_decisions=Subquery(LoadBalancer.objects.filter(pk=1).values("decisions")),
    )
)


def _quoted(model: type[Any], field: str | None = None) -> str:
    quote = connection.ops.quote_name
    return quote(model._meta.get_field(field).column) if field else quote(model._meta.db_table)


def plan_new_task(*, task_type: str, group: str, capabilities: list[str]) -> PlannedRoute | None:
    """The route of a job being submitted in one statement (tasks.services.submit_statement),
    decided without taking the load balancer's lock: on the shared queue with no server
    registered; else with one read of the servers' loads and the balancer's state, given
    to a server only if no other decision was saved since that read (the guard checks the
    balancer's `decisions`). None where routing needs the lock (no balancer row yet):
    the submit then routes with route_new_task.

    The guard saves the decision before the statement checks the owner's quota (the
    lock order of the transaction path: the balancer, then the owner's count), so a
    submit the quota refuses has still counted as a decision: round-robin's ring moves
    on by one, as if the job had gone and finished."""
    global _servers_registered
    if not _servers_registered:
        guard = f"SELECT 1 AS held WHERE NOT EXISTS (SELECT 1 FROM {_quoted(Server)})"
        return PlannedRoute(_serverless_route(capabilities), guard, (), serverless=True)
    ring = _plan_read()
    if not ring:
        _servers_registered = False
        return plan_new_task(task_type=task_type, group=group, capabilities=capabilities)
    first = ring[0]
    if first.balancer_decisions is None:
        return None
    # A raw read leaves the JSON as the database sent it.
    state = first.balancer_state
    state = json.loads(state) if isinstance(state, str) else state
    balancer = LoadBalancer(
        pk=1, algorithm=first.balancer_algorithm, state=state or {}, decisions=first.balancer_decisions
    )
    router = Router(balancer, ring=ring)
    route = router.route(task_type=task_type, group=group, capabilities=capabilities)
    if route.server is None:
        # No server can take it now: it waits, or goes to the local workers' shared
        # queue. Nothing to save, so nothing to guard: a slot freed since the read is
        # given to it by the routing pass that follows the job ending there, as when
        # the slot frees while a submit holds the lock.
        return PlannedRoute(route, "SELECT 1 AS held", (), serverless=False)
    table, decisions = _quoted(LoadBalancer), _quoted(LoadBalancer, "decisions")
    guard = (
        f"UPDATE {table} SET {decisions} = {decisions} + 1, {_quoted(LoadBalancer, 'state')} = %s, "
        f"{_quoted(LoadBalancer, 'updated_at')} = %s "
        f"WHERE {_quoted(LoadBalancer, 'id')} = 1 AND {decisions} = %s RETURNING 1 AS held"
    )
    state = LoadBalancer._meta.get_field("state").get_db_prep_save(router.state_to_save(), connection)
    return PlannedRoute(route, guard, (state, timezone.now(), balancer.decisions), serverless=False)


def route_new_task(*, task_type: str, group: str, capabilities: list[str]) -> Route:
    """The route of a job being submitted; call inside the submit's transaction."""
    global _servers_registered
    if not Server.objects.exists():
        _servers_registered = False
        return _serverless_route(capabilities)
    _servers_registered = True
    router = Router.locked()
    route = router.route(task_type=task_type, group=group, capabilities=capabilities)
    router.save()
    return route


def _needs_route(*, queue_name: str, server: Server | None) -> bool:
    if not queue_name:
        return True
    if server is None:
        # The shared queue stays valid; any other queue belonged to a server since removed.
        return queue_name != shared_queue_name()
    return server.status == ServerStatus.OFFLINE or server.maintenance


@transaction.atomic
def task_destination(*, task_id: UUID | str) -> Destination | None:
    """Where a PENDING job's message goes, routing it first if it has no usable route.
    None when the job is not PENDING or must wait for a server."""
    task = Task.objects.select_related("server").filter(pk=task_id, state=TaskState.PENDING).first()
    if task is None:
        return None
    if not _needs_route(queue_name=task.queue_name, server=task.server):
        return Route(server=task.server, queue_name=task.queue_name).destination
    if not Server.objects.exists():
        route = _serverless_route(task.capabilities)
    else:
        router = Router.locked()
        route = router.route(task_type=task.task_type, group=task.group, capabilities=task.capabilities)
        router.save()
    if not _assign(task=task, route=route):
        return None
    return route.destination


def _assign(*, task: Task, route: Route) -> bool:
    """Move a PENDING job to a route, only if nobody changed its state or route since
    it was read."""
    updated = Task.objects.filter(
        pk=task.pk, state=TaskState.PENDING, queue_name=task.queue_name, server_id=task.server_id
    ).update(
        **route.task_fields(), dispatched_at=timezone.now() if route.queue_name else None, updated_at=timezone.now()
    )
    if updated and route.server is not None and route.server.pk != task.server_id:
        TaskEvent.objects.create(
            task_id=task.pk, type=TaskEvent.Type.ROUTED, state=TaskState.PENDING, data=route.event_data()
        )
    return bool(updated)


# What routing a waiting job reads of it.
ROUTING_FIELDS = ("pk", "state", "queue_name", "server_id", "task_type", "group", "capabilities", "priority")


def _waiting() -> QuerySet[Task]:
    return Task.objects.filter(state=TaskState.PENDING, queue_name="")


_any_waiting = CompiledRead(lambda: _waiting().order_by().only("pk")[:1])
# By how many are read: the bound is part of the SQL. Up to a pass's limit.
_best_waiting_reads = CompiledReads(
    lambda count: _waiting().order_by("-priority", "submitted_at").only(*ROUTING_FIELDS)[:count]
)


def _best_waiting(count: int) -> list[Task]:
    """The `count` best jobs waiting for a server, as the claim would order them."""
    return _best_waiting_reads(count) if count >= 1 else []


def tasks_route_waiting(*, limit: int = 500) -> int:
    """Route jobs waiting for a server, best first, as far as servers have free slots.
    Called when a server comes online or leaves maintenance, when a job finishes, and
    by the sweep. Safe to run in several processes: the lock makes them take turns."""
    if not _any_waiting():
        return 0
    with transaction.atomic():
        router = Router.locked()
        if not router.ring:
            return _route_all([(task, _shared_route()) for task in _best_waiting(limit) if not task.capabilities])
        # Read after taking the lock: another process may have routed some meanwhile.
        # Only about as many as there are free slots: a finished job frees one slot, and
        # reading hundreds of waiting rows for it cost more than the job's own writes.
        # The margin covers jobs no free server may run (capabilities, groups).
        candidates = limit if _local_workers else min(limit, router.free_slots() * 4)
        chosen: list[tuple[Task, Route]] = []
        for task in _best_waiting(candidates):
            if not _local_workers and not router.has_capacity():
                break
            route = router.route(task_type=task.task_type, group=task.group, capabilities=task.capabilities)
            if route.queue_name:
                chosen.append((task, route))
        router.save()
        return _route_all(chosen)


def _route_all(chosen: list[tuple[Task, Route]]) -> int:
    """Move waiting jobs to their chosen routes and send their messages: one UPDATE and
    one INSERT of events per route, not per job (a batch frees several slots at once).
    Only jobs still waiting move; a job cancelled meanwhile stays as it is."""
    by_queue: dict[str, tuple[Route, list[Task]]] = {}
    for task, route in chosen:
        by_queue.setdefault(route.queue_name, (route, []))[1].append(task)
    routed = 0
    for route, tasks in by_queue.values():
        now = timezone.now()
        ids = [task.pk for task in tasks]
        updated = Task.objects.filter(pk__in=ids, state=TaskState.PENDING, queue_name="").update(
            **route.task_fields(), dispatched_at=now, updated_at=now
        )
        if not updated:
            continue
        moved = rows_changed(ids, updated=updated, queue_name=route.queue_name, updated_at=now)
        if route.server is not None:
            TaskEvent.objects.bulk_create(
                [
                    TaskEvent(task_id=pk, type=TaskEvent.Type.ROUTED, state=TaskState.PENDING, data=route.event_data())
                    for pk in moved
                ]
            )
        for pk in moved:
            dispatch_on_commit(task_id=pk, destination=route.destination)
        routed += len(moved)
    return routed


_deferred = threading.local()


def route_waiting_on_commit() -> None:
    """After a job finishes or a server frees up: its slot may be what a waiting job needs."""
    if getattr(_deferred, "depth", 0):
        transaction.on_commit(_route_later)
    else:
        transaction.on_commit(tasks_route_waiting)


def _route_later() -> None:
    _deferred.due = True


@contextmanager
def routing_deferred() -> Iterator[None]:
    """Jobs finishing inside (a worker settling a batch) ask for one routing pass at
    the end, not one each: a pass costs a lock and a dozen queries, and routes every
    slot the batch freed at once. Blocks nest; the outermost one's end runs the pass,
    unless `routing_pass_taken` handed it elsewhere first."""
    _deferred.depth = getattr(_deferred, "depth", 0) + 1
    try:
        yield
    finally:
        _deferred.depth -= 1
        if not _deferred.depth and routing_pass_taken():
            tasks_route_waiting()


def routing_pass_taken() -> bool:
    """Whether a pass was asked for inside the open routing_deferred blocks; it is then
    the caller's to run (a worker runs it before its next claim, see generation.runner),
    and the blocks' end does not."""
    due = getattr(_deferred, "due", False)
    _deferred.due = False
    return due
