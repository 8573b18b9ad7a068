"""Remote GPU servers: jobs are POSTed to their predict URL, and they report back with
PUT /api/v1/tasks/{id} and their server key."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from uuid import UUID

import requests
from django.conf import settings
from django.db.models import Q

from backserv_site.errors import InvalidInput, StateConflict
from servers.models import Server, ServerKind, ServerStatus
from servers.services import server_liveness_set, servers_release_jobs
from tasks import services as task_services
from tasks.models import ACTIVE_STATES, Task, TaskState

logger = logging.getLogger(__name__)


def remote_worker_name(server: Server) -> str:
    return f"remote:{server.name}"


def task_callback_url(task_id: UUID | str) -> str:
    return f"{settings.SERVERS['CALLBACK_BASE_URL'].rstrip('/')}/api/v1/tasks/{task_id}"


def task_forward(*, task_id: UUID | str) -> bool:
    """Claim a job routed to a remote server on its behalf and POST it there. A server
    that cannot be reached gets the job back to route elsewhere and is marked degraded;
    a server that refuses the job (4xx) fails it."""
    task = Task.objects.select_related("server").filter(pk=task_id, state=TaskState.PENDING).first()
    if task is None or task.server is None or task.server.kind != ServerKind.REMOTE:
        return False
    server = task.server
    if not task_services.task_claim(task_id=task.pk, worker=remote_worker_name(server), queue_name=server.queue_name):
        return False
    task.refresh_from_db()
    payload = {
        "task_id": str(task.pk),
        "task_type": task.task_type,
        "params": task.params,
        "priority": task.priority,
        "attempt": task.attempts,
        "callback_url": task_callback_url(task.pk),
    }
    try:
        response = _post_with_retries(server.predict_url, payload, headers=server_auth_headers(server))
    except ServerRefused as error:
        # Nothing listens there: the server is down, not slow. Its jobs, this one
        # included, go to other capacity now, not once its heartbeats are missed.
        logger.warning("server %s refused the connection (%s): offline", server.name, error)
        server_liveness_set(server_id=server.pk, status=ServerStatus.OFFLINE)
        reason = f"server {server.name} refused the connection"
        # This job never got there: its claim is handed back unspent (after the server
        # went offline, so it is routed elsewhere); the others may have run there.
        task_services.task_hand_back(task=task, reason=reason)
        servers_release_jobs(server=server, reason=reason)
        return False
    if response is not None and response.ok:
        logger.info("task %s forwarded to %s", task.pk, server.name)
        return True
    if response is not None and 400 <= response.status_code < 500 and response.status_code != 429:
        message = f"The GPU server {server.name} refused the job ({response.status_code}): {response.text[:500]}"
        task_services.task_fail(task=task, code="REMOTE_REJECTED", message=message)
        return False
    server_liveness_set(server_id=server.pk, status=ServerStatus.DEGRADED, only_if=Q(status=ServerStatus.ONLINE))
    task_services.task_release(task=task, reason=f"server {server.name} unreachable")
    return False


def server_auth_headers(server: Server) -> dict[str, str]:
    """What authenticates our calls to the server: its own API key, when it gave one."""
    return {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}


class ServerRefused(Exception):
    """The server's address answered no connection (nothing listens, or no such host)."""


_sessions = threading.local()


def remote_session() -> requests.Session:
    """This thread's HTTP session: its connections to the servers are kept and reused."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def _post_with_retries(url: str, payload: dict[str, Any], *, headers: dict[str, str]) -> requests.Response | None:
    """The server's answer, or None when it kept failing (timeouts, 5xx, 429). Raises
    ServerRefused when no connection could be opened: retrying that only held the
    worker thread for seconds."""
    config = settings.SERVERS
    attempts = max(1, config["REMOTE_RETRIES"] + 1)
    response: requests.Response | None = None
    for attempt in range(attempts):
        try:
            response = remote_session().post(
                url, json=payload, headers=headers, timeout=config["REMOTE_TIMEOUT_SECONDS"]
            )
        except requests.ConnectionError as error:
            # A connect timeout is a ConnectionError too: a slow server, worth another try.
            if not isinstance(error, requests.Timeout):
                raise ServerRefused(str(error)) from error
            logger.warning("POST %s timed out, attempt %d of %d", url, attempt + 1, attempts)
            response = None
        except requests.RequestException as error:
            logger.warning("POST %s failed (%s), attempt %d of %d", url, error, attempt + 1, attempts)
            response = None
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            logger.warning("POST %s answered %d, attempt %d of %d", url, response.status_code, attempt + 1, attempts)
        if attempt + 1 < attempts:
            time.sleep(min(config["REMOTE_RETRY_BACKOFF_SECONDS"] * 2**attempt, 30))
    return response


# What a remote server may report, as the state it means.
REPORTED_STATES = {
    "STARTED": TaskState.STARTED,
    "PROCESSING": TaskState.STARTED,
    "SUCCESS": TaskState.SUCCESS,
    "COMPLETED": TaskState.SUCCESS,
    "FAILURE": TaskState.FAILURE,
    "FAILED": TaskState.FAILURE,
    "REVOKED": TaskState.REVOKED,
    "CANCELLED": TaskState.REVOKED,
}


def task_report_from_server(
    *,
    server: Server,
    task: Task,
    state: str | None = None,
    progress: float | None = None,
    result: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    attempt: int | None = None,
) -> Task:
    """A remote server's word on a job it runs. The state machine's rules hold: the
    server may only move its current claim forward."""
    if task.server_id != server.pk or task.worker != remote_worker_name(server) or task.state not in ACTIVE_STATES:
        task.refresh_from_db()
        raise StateConflict(f"Task is {task.state} and not running on this server; nothing to report.")
    if attempt is not None and attempt != task.attempts:
        raise StateConflict(f"Attempt {attempt} is over; the task is on attempt {task.attempts}.")
    target = REPORTED_STATES.get((state or "").upper()) if state else None
    if state and target is None:
        raise InvalidInput(
            f"state must be one of {', '.join(REPORTED_STATES)}.",
            fields={"state": [f"Must be one of {', '.join(REPORTED_STATES)}."]},
        )
    task_services.task_lease_renew(task=task)
    if target == TaskState.REVOKED:
        task_services.task_revoke_running(task=task)
    elif target is not None or progress is not None:
        if task.state == TaskState.RECEIVED and not task_services.task_start(task=task):
            task.refresh_from_db()
            if task.cancel_requested:
                task_services.task_revoke_running(task=task)
            task.refresh_from_db()
            raise StateConflict(f"Task is {task.state}; it was cancelled before it started.")
        if progress is not None and target in (None, TaskState.STARTED):
            task_services.task_progress_report(task=task, progress=progress, step=round(progress * 100), total=100)
        if target == TaskState.SUCCESS:
            task_services.task_succeed(task=task, result=result or {})
        elif target == TaskState.FAILURE:
            error = error or {}
            task_services.task_fail(
                task=task,
                code=str(error.get("code") or "REMOTE_FAILURE"),
                message=str(error.get("message") or "The GPU server reported a failure."),
            )
    task.refresh_from_db()
    return task
