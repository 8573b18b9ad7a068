"""Signed webhooks: every write about them, and the sending of one attempt.

Signing follows the Standard Webhooks scheme, so its libraries verify our requests:
headers `webhook-id` (the delivery id, the same on every attempt), `webhook-timestamp`
(Unix seconds of the attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, keyed with the base64 part of the owner's `whsec_` secret.

Delivery is at least once: an attempt that meets a 5xx, 408, 429, a timeout or a
connection error is tried again with exponential backoff until
WEBHOOK_RETRY_WINDOW_SECONDS have passed; any other 4xx (or a 3xx: redirects are not
followed) stops it. Every attempt is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import secrets
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from backserv_site import netsafety
from backserv_site.errors import InvalidInput
from tasks.models import Task, WebhookAttempt, WebhookDelivery, WebhookSecret

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
_RESPONSE_READ_LIMIT = 64 * 1024
State = WebhookDelivery.State


def _config(name: str) -> Any:
    return settings.BACKSERV[name]


def webhook_url_validate(url: str) -> None:
    try:
        netsafety.check_url(url)
    except netsafety.UnsafeURL as error:
        raise InvalidInput(f"webhook: {error}", fields={"webhook": [str(error)]}) from None


# Secrets ---------------------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret_get(*, owner: Any) -> WebhookSecret:
    secret, _ = WebhookSecret.objects.get_or_create(owner=owner, defaults={"secret": _new_secret()})
    return secret


@transaction.atomic
def webhook_secret_rotate(*, owner: Any) -> WebhookSecret:
    secret, created = WebhookSecret.objects.select_for_update().get_or_create(
        owner=owner, defaults={"secret": _new_secret()}
    )
    if not created:
        secret.secret = _new_secret()
        secret.save(update_fields=["secret", "rotated_at"])
    return secret


def webhook_signature(*, secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# Deliveries --------------------------------------------------------------------------


def _send_on_commit(delivery_id: UUID, delay_seconds: float = 0.0) -> None:
    def send() -> None:
        from tasks.actors import deliver_webhook

        try:
            deliver_webhook.send_with_options(args=(str(delivery_id),), delay=int(delay_seconds * 1000) or None)
        except Exception:
            # The delivery stays due; the sweep sends it again.
            logger.warning("could not send webhook delivery %s to the broker", delivery_id, exc_info=True)

    transaction.on_commit(send)


def webhook_delivery_create(*, task_id: UUID | str, event: str) -> WebhookDelivery | None:
    from tasks.api.serializers import TaskSerializer

    task = Task.objects.filter(pk=task_id).first()
    if task is None or not task.webhook:
        return None
    body = JSONRenderer().render(TaskSerializer(task).data).decode()
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            task=task, event=event, url=task.webhook, body=body, next_attempt_at=now, scheduled_since=now
        )
        _send_on_commit(delivery.pk)
    return delivery


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send again (operators and owners), with a fresh retry window; same delivery id."""
    now = timezone.now()
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            state=State.PENDING, next_attempt_at=now, scheduled_since=now, completed_at=None
        )
        _send_on_commit(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def _retry_delay(attempt: int) -> float:
    return min(_config("WEBHOOK_FIRST_RETRY_SECONDS") * 2 ** (attempt - 1), _config("WEBHOOK_MAX_RETRY_SECONDS"))


def webhook_deliver(*, delivery_id: UUID | str) -> None:
    """One attempt of a due delivery, then its next step (done, retry later, give up)."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, state=State.PENDING).first()
    now = timezone.now()
    if delivery is None or (delivery.next_attempt_at and delivery.next_attempt_at > now + timedelta(seconds=1)):
        return
    number = delivery.attempts + 1
    # Claim the attempt: of two messages for it (a sweep re-sent one), one sends. The
    # pushed-back due time keeps the sweep off it while it runs.
    busy_until = now + timedelta(seconds=_config("WEBHOOK_TIMEOUT_SECONDS") + 60)
    claimed = WebhookDelivery.objects.filter(pk=delivery.pk, state=State.PENDING, attempts=delivery.attempts).update(
        attempts=number, next_attempt_at=busy_until
    )
    if not claimed:
        return
    secret = webhook_secret_get(owner=delivery.task.owner).secret
    status_code, error, retryable, duration_ms = _attempt(delivery, secret)
    finished = timezone.now()
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, status_code=status_code, duration_ms=duration_ms, error=error
        )
        if status_code is not None and 200 <= status_code < 300:
            update: dict[str, Any] = {"state": State.DELIVERED, "completed_at": finished, "next_attempt_at": None}
        elif retryable and (
            finished + timedelta(seconds=_retry_delay(number))
            <= delivery.scheduled_since + timedelta(seconds=_config("WEBHOOK_RETRY_WINDOW_SECONDS"))
        ):
            delay = _retry_delay(number)
            update = {"next_attempt_at": finished + timedelta(seconds=delay)}
            _send_on_commit(delivery.pk, delay)
        else:
            update = {"state": State.FAILED, "completed_at": finished, "next_attempt_at": None}
        WebhookDelivery.objects.filter(pk=delivery.pk, attempts=number).update(**update)
    logger.info("webhook %s attempt %d: %s", delivery.pk, number, status_code or error)


def _attempt(delivery: WebhookDelivery, secret: str) -> tuple[int | None, str, bool, int]:
    """(status code, error, whether to retry, duration in ms) of one POST."""
    body = delivery.body.encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Back.Serv-Webhooks/{settings.VERSION}",
        "webhook-id": str(delivery.pk),
        "webhook-timestamp": timestamp,
        "webhook-signature": webhook_signature(
            secret=secret, delivery_id=str(delivery.pk), timestamp=timestamp, body=body
        ),
        "webhook-event": delivery.event,
    }
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = netsafety.check_url(delivery.url)
    except netsafety.UnresolvableHost as error:
        return None, str(error), True, elapsed()
    except netsafety.UnsafeURL as error:
        return None, f"refused: {error}", False, elapsed()
    connection = netsafety.pinned_connection(
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        address=target.addresses[0],
        timeout=_config("WEBHOOK_TIMEOUT_SECONDS"),
    )
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(_RESPONSE_READ_LIMIT)
        status_code = response.status
    except TimeoutError:
        return None, "timed out", True, elapsed()
    except (OSError, http.client.HTTPException) as error:
        return None, f"connection error: {error or type(error).__name__}", True, elapsed()
    finally:
        connection.close()
    if 200 <= status_code < 300:
        return status_code, "", False, elapsed()
    retryable = status_code >= 500 or status_code in (408, 429)
    error = f"HTTP {status_code}" + ("" if status_code >= 400 else " (redirects are not followed)")
    return status_code, error, retryable, elapsed()


def webhooks_redispatch_due(*, grace_seconds: float = 60.0) -> int:
    """Send again the deliveries whose message seems lost (due long ago, still pending)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_seconds)
    sent = 0
    due = WebhookDelivery.objects.filter(state=State.PENDING, next_attempt_at__lt=cutoff)
    for delivery_id, due_at in due.values_list("pk", "next_attempt_at")[:500]:
        # Compare-and-set on the due time: concurrent sweeps send each one once.
        with transaction.atomic():
            if WebhookDelivery.objects.filter(pk=delivery_id, state=State.PENDING, next_attempt_at=due_at).update(
                next_attempt_at=now
            ):
                _send_on_commit(delivery_id)
                sent += 1
    return sent
