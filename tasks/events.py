"""What follows a committed job event: waiters are woken and webhooks scheduled.

Both read the event log afterwards, so this only says that something happened."""

from __future__ import annotations

from typing import Any, NamedTuple
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


class EventAudience(NamedTuple):
    """Who hears of a job's events: its owner's streams and its webhook."""

    owner_id: int
    webhook: str
    webhook_events: list[str]

    @classmethod
    def of(cls, row: dict[str, Any]) -> EventAudience:
        return cls(*(row[field] for field in cls._fields))


def task_event_committed(*, task_id: UUID | str, event_type: str, audience: EventAudience | None = None) -> None:
    from tasks.webhooks import webhook_delivery_create

    if audience is None:
        row = Task.objects.filter(pk=task_id).values(*EventAudience._fields).first()
        if row is None:
            return
        audience = EventAudience.of(row)
    owner_id, webhook, wanted = audience
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
