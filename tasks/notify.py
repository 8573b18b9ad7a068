"""Wake whoever waits on a job (sync submits, event streams, WebSockets) when it changes.

A notice only says "task X of owner Y changed": waiters re-read the database, which
stays the source of truth, so a duplicate notice costs one read and a lost one only
delays the waiter until its next poll (BACKSERV["NOTIFY_POLL_SECONDS"]).

Within one process notices go straight to the waiters. With BACKSERV["NOTIFY_URL"]
(Redis) they are also published on a pub/sub channel, which one listener thread per
process subscribes to as soon as anything waits there: that carries changes made by
worker processes to the API processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

Wake = Callable[[], None]

# Tells this process's own notices apart when they come back from Redis.
_PROCESS_ID = uuid.uuid4().hex


def task_key(task_id: Any) -> str:
    return f"task:{task_id}"


def owner_key(owner_id: Any) -> str:
    return f"owner:{owner_id}"


class Hub:
    """Waiters of this process, by key. Thread-safe: notices come from worker threads,
    the Redis listener thread and event loops alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Wake]] = defaultdict(set)
        self._listener: threading.Thread | None = None

    def subscribe(self, keys: Iterable[str], wake: Wake) -> Callable[[], None]:
        keys = list(keys)
        with self._lock:
            for key in keys:
                self._waiters[key].add(wake)
        self._ensure_listener()

        def unsubscribe() -> None:
            with self._lock:
                for key in keys:
                    waiting = self._waiters.get(key)
                    if waiting is not None:
                        waiting.discard(wake)
                        if not waiting:
                            del self._waiters[key]

        return unsubscribe

    def dispatch(self, keys: Iterable[str]) -> None:
        with self._lock:
            wakes = {wake for key in keys for wake in self._waiters.get(key, ())}
        for wake in wakes:
            try:
                wake()
            except RuntimeError:
                # The waiter's event loop closed between its unsubscribe and now.
                logger.debug("waiter gone", exc_info=True)

    def waiting_count(self) -> int:
        with self._lock:
            return sum(len(wakes) for wakes in self._waiters.values())

    def _ensure_listener(self) -> None:
        url = settings.BACKSERV["NOTIFY_URL"]
        if not url or self._listener is not None:
            return
        with self._lock:
            if self._listener is not None:
                return
            self._listener = threading.Thread(
                target=_listen,
                args=(self, url, settings.BACKSERV["NOTIFY_CHANNEL"]),
                name="notify-listener",
                daemon=True,
            )
            self._listener.start()


hub = Hub()


def _listen(hub: Hub, url: str, channel: str) -> None:
    import redis

    while True:
        try:
            pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            for message in pubsub.listen():
                notice = json.loads(message["data"])
                if notice.get("origin") != _PROCESS_ID:
                    hub.dispatch(notice["keys"])
        except Exception:
            # Waiters poll meanwhile; reconnect after a pause.
            logger.warning("notify listener lost Redis; reconnecting", exc_info=True)
            threading.Event().wait(2)


# Where else this process's notices go, besides its own waiters and Redis: a GPU child
# process of `manage.py serve` passes them to the server process that waits on them
# (generation.worker_process).
relays: list[Callable[[list[str]], None]] = []

_publisher_lock = threading.Lock()
_publisher: Any = None


def _redis_publisher(url: str) -> Any:
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            import redis

            _publisher = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return _publisher


def publish_tasks_changed(changes: Iterable[tuple[Any, Any]]) -> None:
    """Wake the waiters of changed jobs, given as (task_id, owner_id): one notice for
    them all, here and (with NOTIFY_URL) on Redis."""
    changes = list(changes)
    if not changes:
        return
    keys = list(dict.fromkeys(key for task_id, owner_id in changes for key in (task_key(task_id), owner_key(owner_id))))
    hub.dispatch(keys)
    for relay in relays:
        relay(keys)
    url = settings.BACKSERV["NOTIFY_URL"]
    if url:
        try:
            notice = json.dumps({"origin": _PROCESS_ID, "keys": keys})
            _redis_publisher(url).publish(settings.BACKSERV["NOTIFY_CHANNEL"], notice)
        except Exception:
            task_ids = ", ".join(str(task_id) for task_id, _ in changes)
            logger.warning("could not publish a change of tasks %s; waiters will poll", task_ids, exc_info=True)


class AsyncSubscription:
    """Subscribe first, then read the database, then `await wait()`: a change between
    the read and the wait still wakes it (the event stays set until waited on)."""

    def __init__(self, keys: Iterable[str]):
        self.keys = list(keys)
        self._event = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    async def __aenter__(self) -> AsyncSubscription:
        loop = asyncio.get_running_loop()
        self._unsubscribe = hub.subscribe(self.keys, lambda: loop.call_soon_threadsafe(self._event.set))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    async def wait(self, timeout: float) -> bool:
        """True when woken by a notice, False when the timeout passed."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout=max(timeout, 0))
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


class BlockingSubscription:
    """The same for a thread (WSGI deployments, which hold a thread per wait anyway)."""

    def __init__(self, keys: Iterable[str]):
        self.keys = list(keys)
        self._event = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> BlockingSubscription:
        self._unsubscribe = hub.subscribe(self.keys, self._event.set)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def wait(self, timeout: float) -> bool:
        woken = self._event.wait(max(timeout, 0))
        self._event.clear()
        return woken


def poll_interval() -> float:
    return float(settings.BACKSERV["NOTIFY_POLL_SECONDS"])
