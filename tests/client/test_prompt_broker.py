"""The Redis broker hands a message to an idle consumer at once, instead of after a
polling backoff that grows to the worker timeout."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from dramatiq import Message
from dramatiq.brokers.redis import _RedisConsumer

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


def test_a_consumer_full_as_it_looked_does_not_wait_on_the_wake_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread acks its message while the consumer is deciding: the consumer
    was full, so it fetched nothing; it must look again, not wait out the worker timeout
    on a wake list whose tokens a backlog has outrun."""
    client = redis_or_skip()
    broker = _broker()
    for _ in range(2):
        broker.enqueue(_message())
    client.delete(f"{broker.namespace}:jobs.wake")  # a backlog beyond the tokens kept
    consumer = broker.consume("jobs", prefetch=1, timeout=IDLE_TIMEOUT_MS)
    first = next(consumer)
    assert first is not None  # the consumer is full now: one outstanding, prefetch 1
    fetch_or_not = _RedisConsumer.__next__

    def then_the_ack_lands(self: _RedisConsumer) -> object:
        message = fetch_or_not(self)
        if message is None and consumer.queued_message_ids:
            consumer.ack(first)
        return message

    monkeypatch.setattr(_RedisConsumer, "__next__", then_the_ack_lands)
    started = time.monotonic()
    assert next(consumer) is None
    assert time.monotonic() - started < 0.5
    assert next(consumer) is not None  # the second message, fetched on the next look
    broker.flush_all()
    broker.close()
