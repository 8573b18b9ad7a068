"""The Redis broker hands a message to an idle consumer at once, instead of after a
polling backoff that grows to the worker timeout."""

from __future__ import annotations

import threading
import time
import uuid

from dramatiq import Message

from tasks.brokers import WAKE_TOKENS_KEPT, PromptRedisBroker
from tests.client.test_notify import REDIS_URL, redis_or_skip

IDLE_TIMEOUT_MS = 5000


def _broker() -> PromptRedisBroker:
    broker = PromptRedisBroker(url=REDIS_URL, namespace=f"backserv-test-{uuid.uuid4().hex[:8]}")
    broker.declare_queue("jobs")
    return broker


def _message() -> Message:
    return Message(queue_name="jobs", actor_name="noop", args=(), kwargs={}, options={})


def test_an_idle_consumer_gets_a_message_as_soon_as_it_is_sent() -> None:
    redis_or_skip()
    broker = _broker()
    consumer = broker.consume("jobs", prefetch=1, timeout=IDLE_TIMEOUT_MS)
    received: list[float] = []

    def consume() -> None:
        deadline = time.monotonic() + IDLE_TIMEOUT_MS / 1000 * 2
        while time.monotonic() < deadline:
            message = next(consumer)
            if message is not None:
                received.append(time.monotonic())
                consumer.ack(message)
                return

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.5)  # the consumer is now idle, waiting on the wake list
    sent = time.monotonic()
    broker.enqueue(_message())
    thread.join(IDLE_TIMEOUT_MS / 1000 * 2)
    assert received, "the message never arrived"
    # Dramatiq's own consumer would be sleeping out a backoff of up to the idle timeout.
    assert received[0] - sent < 0.5
    broker.close()


def test_wake_tokens_are_bounded_when_nobody_consumes() -> None:
    client = redis_or_skip()
    broker = _broker()
    for _ in range(WAKE_TOKENS_KEPT + 50):
        broker.enqueue(_message())
    assert client.llen(f"{broker.namespace}:jobs.wake") == WAKE_TOKENS_KEPT
    broker.flush_all()
    client.delete(f"{broker.namespace}:jobs.wake")
    broker.close()


def test_a_delayed_message_still_waits_its_delay() -> None:
    redis_or_skip()
    broker = _broker()
    enqueued = broker.enqueue(_message(), delay=60_000)
    assert enqueued.queue_name == "jobs.DQ"
    consumer = broker.consume("jobs", prefetch=1, timeout=100)
    assert next(consumer) is None
    broker.flush_all()
    broker.close()
