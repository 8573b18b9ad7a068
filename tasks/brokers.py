"""Dramatiq's Redis broker, with prompt delivery to idle workers.

Dramatiq's Redis consumer polls an empty queue with a backoff that grows to the worker
timeout (a second): a job sent to an idle worker waited 0.4 s on average before it was
even fetched (bench/dispatch.py). Here every enqueue also pushes a token on the
queue's wake list, and an idle consumer blocks on that list (BLPOP) instead of
sleeping, so it fetches the message as soon as it is sent. Tokens are only hints: a
stale one costs one empty fetch, and the list is trimmed so it cannot grow unbounded.
RabbitMQ pushes messages to consumers and needs none of this.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed

# More tokens than this waiting means the workers are busy anyway: each fetch then
# finds messages without waiting on the list.
WAKE_TOKENS_KEPT = 1000
# While its prefetch is full a consumer cannot fetch: it looks again after a wait that
# doubles from the first to the last figure. Short at first, since a message whose job
# another thread already took is done within a millisecond or two; long later, since a
# consumer waking every few milliseconds through a whole GPU job takes the GIL from
# the thread running it.
FULL_POLL_FIRST_SECONDS = 0.001
FULL_POLL_MAX_SECONDS = 0.05


def wake_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.wake"


class PromptRedisBroker(RedisBroker):
    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        enqueued = super().enqueue(message, delay=delay)
        key = wake_key(self.namespace, enqueued.queue_name)
        with self.client.pipeline(transaction=False) as pipeline:
            pipeline.lpush(key, 1)
            pipeline.ltrim(key, 0, WAKE_TOKENS_KEPT - 1)
            pipeline.execute()
        return enqueued

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _PromptConsumer:
        return _PromptConsumer(self, queue_name, prefetch, timeout)


class _PromptConsumer(_RedisConsumer):
    def __init__(self, broker: PromptRedisBroker, queue_name: str, prefetch: int, timeout: int):
        # No backoff in the parent: it returns at once when there is nothing to fetch,
        # and the waiting happens here, on the wake list.
        super().__init__(broker, queue_name, prefetch, 0)
        self.idle_seconds = timeout / 1000
        self.wake_key = wake_key(broker.namespace, queue_name)
        self.full_poll_seconds = FULL_POLL_FIRST_SECONDS

    def __next__(self) -> Any:
        # Read before the parent looks: worker threads ack concurrently, so the count can
        # drop while the parent runs. Had it been full, the parent did not fetch, and the
        # queue may hold messages whose wake tokens are gone (more than the tokens kept,
        # or taken by an earlier wait): waiting on the list would stall a backlog for the
        # whole worker timeout, one message or two at a time.
        full = self.outstanding_message_count >= self.prefetch
        message = super().__next__()
        if message is not None:
            self.full_poll_seconds = FULL_POLL_FIRST_SECONDS
            return message
        if full:
            time.sleep(self.full_poll_seconds)
            self.full_poll_seconds = min(self.full_poll_seconds * 2, FULL_POLL_MAX_SECONDS)
            return None
        try:
            # Up to the worker timeout, so the worker still notices a shutdown promptly.
            self.broker.client.blpop([self.wake_key], timeout=self.idle_seconds)
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        return None
