"""The studio's progress socket, /ws/generation: every event of the caller's jobs from
the moment of connecting (or after `?last_event_id=`), in the document's message shape;
stays open. Served by the ASGI router (backserv_site.asgi) over tasks.streams."""

from __future__ import annotations

import re
from typing import Any

from tasks.compat.studio.names import STATUS_NAMES
from tasks.events import event_payload
from tasks.models import TaskEvent, TaskState
from tasks.streams import AsgiApp, owner_events_websocket


def studio_message(event: TaskEvent, progress_seen: dict[str, float]) -> dict[str, Any]:
    """A /ws/generation message: `type` is always "progress", `progress` 0-100, `status`
    queued / generating / completed / failed; the event itself rides along (`event`,
    `state`, `task_id`, `id`, step and total). `progress_seen` is the connection's last
    progress of each job."""
    payload = event_payload(event)
    task_id = payload["task_id"]
    if event.type == TaskEvent.Type.PROGRESS:
        progress_seen[task_id] = float(payload.get("progress") or 0.0)
    elif event.state == TaskState.SUCCESS:
        progress_seen[task_id] = 1.0
    elif event.state == TaskState.PENDING:
        progress_seen[task_id] = 0.0  # submitted, or back in the queue for a retry
    payload.update(
        event=payload.pop("type"),
        type="progress",
        taskId=task_id,
        progress=round(progress_seen.get(task_id, 0.0) * 100, 1),
        status=STATUS_NAMES[TaskState(event.state)],
    )
    return payload


async def generation_socket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    progress_seen: dict[str, float] = {}
    await owner_events_websocket(scope, receive, send, message=lambda event: studio_message(event, progress_seen))


websocket_routes: list[tuple[re.Pattern[str], AsgiApp]] = [(re.compile(r"^/ws/generation/?$"), generation_socket)]
