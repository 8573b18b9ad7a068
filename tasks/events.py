"""What follows a committed job event: waiters are woken and webhooks scheduled.

Both read the event log afterwards, so this only says that something happened."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tasks.models import Task, TaskEvent, WebhookEvent
from tasks.notify import publish_task_changed

EventType = TaskEvent.Type

WEBHOOK_EVENT_OF: dict[str, WebhookEvent] = {
    EventType.STARTED: WebhookEvent.START,
    EventType.PROGRESS: WebhookEvent.PROGRESS,
    EventType.SUCCEEDED: WebhookEvent.COMPLETED,
    EventType.FAILED: WebhookEvent.COMPLETED,
    EventType.REVOKED: WebhookEvent.COMPLETED,
    EventType.TIMED_OUT: WebhookEvent.COMPLETED,
}


def task_event_committed(*, task_id: UUID | str, event_id: int, event_type: str) -> None:
    from tasks.webhooks import webhook_delivery_create

    row = Task.objects.filter(pk=task_id).values_list("owner_id", "webhook", "webhook_events").first()
    if row is None:
        return
    owner_id, webhook, wanted = row
    publish_task_changed(task_id=task_id, owner_id=owner_id)
    hook_event = WEBHOOK_EVENT_OF.get(event_type)
    if webhook and hook_event is not None and (hook_event == WebhookEvent.COMPLETED or hook_event in wanted):
        webhook_delivery_create(task_id=task_id, event=hook_event)


def event_payload(event: TaskEvent) -> dict[str, Any]:
    """One event as streams (SSE, WebSocket) carry it."""
    payload: dict[str, Any] = {
        "id": event.pk,
        "task_id": str(event.task_id),
        "type": event.type,
        "state": event.state,
        "created_at": event.created_at.isoformat(),
    }
    if event.type == EventType.PROGRESS:
        payload.update({key: event.data.get(key) for key in ("progress", "step", "total")})
    elif event.data:
        payload["data"] = event.data
    return payload
