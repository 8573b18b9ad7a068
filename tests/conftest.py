"""The cast (owner, other user, staff), API clients holding their tokens, and an
in-process Dramatiq worker on the stub broker.

Tests that run jobs through the worker must use the `worker` fixture, which needs a
transactional database: worker threads see only committed rows.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.conf import settings
from django.core.cache import cache
from dramatiq.brokers.stub import StubBroker
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_token_create
from tasks.models import TERMINAL_STATES, Task
from tasks.selectors import run_seconds_forget


@pytest.fixture(scope="session")
def demo_models() -> Path:
    """Tiny diffusers models, built once per test session (torch import ~5 s)."""
    from generation.demo_models import build_demo_models

    directory = Path(settings.TEST_MODELS_DIR)
    build_demo_models(directory)
    return directory


@pytest.fixture(autouse=True)
def _media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _user(username: str, *, staff: bool = False) -> User:
    return User.objects.create_user(username=username, password="unused-pass-1234", is_staff=staff, is_superuser=staff)


def _client_for(user: User, scopes: tuple[str, ...] = ("read", "write")) -> APIClient:
    client = APIClient()
    secret = api_token_create(user=user, name="test", scopes=scopes).secret
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client.user = user  # type: ignore[attr-defined]
    client.token = secret  # type: ignore[attr-defined]
    return client


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    # Rate-limit counters live in the cache; no test inherits another's. Nor the run
    # times an ETA was drawn from.
    cache.clear()
    run_seconds_forget()
    yield
    cache.clear()


@pytest.fixture
def owner(db: None) -> User:
    return _user("alice")


@pytest.fixture
def other_user(db: None) -> User:
    return _user("mallory")


@pytest.fixture
def staff(db: None) -> User:
    return _user("operator", staff=True)


@pytest.fixture
def client(owner: User) -> APIClient:
    return _client_for(owner)


@pytest.fixture
def other_client(other_user: User) -> APIClient:
    return _client_for(other_user)


@pytest.fixture
def staff_client(staff: User) -> APIClient:
    """Staff with an admin-scoped token: staff routes, every user's jobs."""
    return _client_for(staff, scopes=("read", "write", "admin"))


@pytest.fixture
def client_with_scopes() -> Callable[..., APIClient]:
    """An API client for `user` holding a token with exactly `scopes`."""

    def make(user: User, *scopes: str) -> APIClient:
        return _client_for(user, scopes=scopes)

    return make


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    broker = dramatiq.get_broker()
    assert isinstance(broker, StubBroker), "tests run in-process on the stub broker"
    _flush(broker)
    yield broker
    _flush(broker)


def _flush(broker: StubBroker) -> None:
    broker.flush_all()
    # A delayed message (a retry's backoff) that a stopped worker was holding until its
    # eta is never acked on the stub broker, so its queue would count it unfinished
    # forever and every later join() would time out. A new test starts with none.
    for queue in broker.queues.values():
        # all_tasks_done holds the queue's own (non-reentrant) mutex: read the deque
        # directly, qsize() would wait on that mutex forever.
        with queue.all_tasks_done:
            queue.unfinished_tasks = len(queue.queue)
            queue.all_tasks_done.notify_all()


def forget_worker(broker: StubBroker, worker: dramatiq.Worker) -> None:
    """A stopped Worker leaves its middleware on the broker, which would start consumers
    for queues declared later (servers' queues) and strand their messages."""
    broker.middleware = [item for item in broker.middleware if getattr(item, "worker", None) is not worker]


class InProcessWorker:
    def __init__(self, broker: StubBroker, threads: int):
        import generation.actors  # noqa: F401  (registers the actors)
        import tasks.actors  # noqa: F401

        self.broker = broker
        self.threads = threads
        self.queue_name = settings.BACKSERV["QUEUE_NAME"]
        self.worker: dramatiq.Worker | None = None

    def start(self) -> None:
        self.broker.emit_after("process_boot")
        self.worker = dramatiq.Worker(self.broker, worker_threads=self.threads, worker_timeout=50)
        self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            forget_worker(self.broker, self.worker)
            self.worker = None

    def drain(self, timeout: float = 180) -> None:
        """Wait until every message sent so far (and those they send) is handled."""
        self.broker.join(self.queue_name, timeout=int(timeout * 1000), fail_fast=True)
        assert self.worker is not None
        self.worker.join()

    def wait_for(self, task_id: Any, states: Any = TERMINAL_STATES, timeout: float = 60) -> Task:
        return wait_for_state(task_id, states, timeout)


def wait_for_state(task_id: Any, states: Any, timeout: float = 60) -> Task:
    deadline = time.monotonic() + timeout
    while True:
        task = Task.objects.get(pk=task_id)
        if task.state in states:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is {task.state} after {timeout}s, expected one of {sorted(states)}")
        time.sleep(0.02)


@pytest.fixture
def worker(transactional_db: None, broker: StubBroker, demo_models: Path) -> Iterator[InProcessWorker]:
    """A started in-process worker (2 threads). Use `worker.drain()` to wait for all
    sent messages, `worker.wait_for(task_id)` to wait for a job to finish."""
    in_process = InProcessWorker(broker, threads=2)
    in_process.start()
    yield in_process
    in_process.stop()


@pytest.fixture
def stopped_worker(transactional_db: None, broker: StubBroker, demo_models: Path) -> Iterator[InProcessWorker]:
    """A worker the test starts itself (to queue jobs first, e.g. for priorities)."""
    in_process = InProcessWorker(broker, threads=1)
    yield in_process
    in_process.stop()


@pytest.fixture
def submit(client: APIClient) -> Callable[..., dict[str, Any]]:
    """Submit a small text-to-image job as the owner over the API (params override the
    64x64, 4-step defaults); returns the response body."""

    def submit_job(*, expect: int = 202, priority: int = 5, **params: Any) -> dict[str, Any]:
        defaults = {"prompt": "a beautiful sunset", "width": 64, "height": 64, "steps": 4, "seed": 7}
        body = {"task_type": "image_creation", "params": {**defaults, **params}, "priority": priority}
        response = client.post("/api/v1/tasks", body, format="json")
        assert response.status_code == expect, response.content
        return response.json()

    return submit_job


@pytest.fixture(scope="session", autouse=True)
def _clean_test_media() -> Iterator[None]:
    yield
    shutil.rmtree(Path(settings.VAR_DIR) / "test-media", ignore_errors=True)
