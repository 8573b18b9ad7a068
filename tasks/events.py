"""What follows a committed job event: waiters are woken and webhooks scheduled.

Both read the event log afterwards, so this only says that something happened."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple
from uuid import UUID

from tasks.models import Task, TaskEvent, WebhookEvent
from tasks.notify import publish_tasks_changed

logger = logging.getLogger(__name__)

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


# A committed event: (task_id, type, audience or None to read it from the job).
CommittedEvent = tuple[UUID | str, str, EventAudience | None]


def task_events_committed(events: list[CommittedEvent]) -> None:
    """After the commit of events appended together: one notice wakes the waiters of
    every job they concern (one Redis message for a batch's jobs, not one per job),
    then each event's webhook delivery is scheduled where the job wants it. A failure
    to schedule one is logged and leaves the others scheduled."""
    from tasks.webhooks import webhook_delivery_create

    heard = []
    for task_id, event_type, audience in events:
        if audience is None:
            row = Task.objects.filter(pk=task_id).values(*EventAudience._fields).first()
            if row is None:
                continue
            audience = EventAudience.of(row)
        heard.append((task_id, event_type, audience))
    publish_tasks_changed([(task_id, audience.owner_id) for task_id, _, audience in heard])
    for task_id, event_type, (_, webhook, wanted) in heard:
        hook_event = WEBHOOK_EVENT_OF.get(event_type)
        if webhook and hook_event is not None and (hook_event == WebhookEvent.COMPLETED or hook_event in wanted):
            try:
                webhook_delivery_create(task_id=task_id, event=hook_event)
            except Exception:
                logger.exception("could not schedule the %s webhook of task %s", hook_event, task_id)


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
