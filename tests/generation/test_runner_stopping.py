"""A worker told to stop (SIGTERM) finishes what runs and claims nothing more."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.db import connection
from dramatiq.brokers.stub import StubBroker
from rest_framework.test import APIClient

from generation.runner import execute_message
from tasks.models import Task, TaskState


def test_a_message_taken_as_the_worker_stops_claims_nothing_and_goes_back(
    transactional_db: None, client: APIClient, demo_models: Any, broker: StubBroker
) -> None:
    body = {"task_type": "image_creation", "params": {"prompt": "fox", "width": 64, "height": 64, "steps": 2}}
    task_id = client.post("/api/v1/tasks", body, format="json").json()["task_id"]
    queue = broker.queues[settings.BACKSERV["QUEUE_NAME"]]
    while not queue.empty():
        queue.get_nowait()  # the submit's own message, which this test plays itself

    def stopping_worker_thread() -> None:
        # What dramatiq's WorkerThread.stop() leaves on the thread.
        threading.current_thread().running = False  # type: ignore[attr-defined]
        try:
            execute_message(task_id, queue_name=Task.objects.get(pk=task_id).queue_name)
        finally:
            connection.close()

    thread = threading.Thread(target=stopping_worker_thread)
    thread.start()
    thread.join(30)

    task = Task.objects.get(pk=task_id)
    assert (task.state, task.attempts, task.worker) == (TaskState.PENDING, 0, "")
    # The job's message is back on its queue for another worker.
    assert queue.qsize() == 1
