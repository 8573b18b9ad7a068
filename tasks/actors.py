"""Dramatiq actors of the tasks app. Thin: take an id, call a service."""

from __future__ import annotations

import dramatiq
from django.conf import settings


@dramatiq.actor(
    actor_name="deliver_webhook",
    queue_name=settings.BACKSERV["WEBHOOK_QUEUE"],
    # The delivery keeps its own retry schedule in the database (every attempt
    # recorded); Dramatiq's retries only cover an infrastructure error such as the
    # database being briefly away.
    max_retries=3,
    min_backoff=1000,
    max_backoff=30000,
    time_limit=5 * 60 * 1000,
)
def deliver_webhook(delivery_id: str) -> None:
    from tasks.webhooks import webhook_deliver

    webhook_deliver(delivery_id=delivery_id)
