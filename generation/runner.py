"""Running one job inside a worker: claim, start, run the pipeline, record the outcome.

Every write goes through tasks.services, so the runner can lose a race (a cancel, a
sweep that reaped its lease) and simply stop: the services refuse the stale write.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.utils import timezone

from generation.inputs import resolve_images
from generation.models_cache import pipeline_cache
from generation.outputs import outputs_discard, outputs_store
from generation.pipelines.base import PipelineInputError
from generation.specs import task_type_spec
from tasks import policy, services
from tasks.models import ACTIVE_STATES, Task, TaskState

logger = logging.getLogger(__name__)


class TaskCancelled(Exception):
    """The job's cancel flag was set while it ran."""


class TaskLost(Exception):
    """The job is no longer ours (its lease was reaped and it was claimed again)."""


class TaskOverTime(Exception):
    """The job ran past its task type's run time limit."""


def worker_name() -> str:
    node = settings.BACKSERV["NODE_NAME"] or socket.gethostname()
    return f"{node}:{os.getpid()}"


def execute_message(task_id: UUID | str, queue_name: str | None = None) -> None:
    """Handle one "run task X" message that arrived on `queue_name`.

    The message is a turn to run the best waiting job of X's queue, which may be X or
    one of higher priority. If it was another, X's message is sent again, so every
    waiting job keeps exactly one message in flight. A message left on a queue X was
    routed away from (its server went offline or into maintenance) is stale: X's new
    queue has its own message, and this worker may not run that queue's jobs.
    """
    hint = Task.objects.filter(pk=task_id).values_list("state", "queue_name").first()
    if hint is None or hint[0] != TaskState.PENDING or not hint[1]:
        return
    if queue_name is not None and hint[1] != queue_name:
        return
    task = services.task_claim_next(queue_name=hint[1], worker=worker_name())
    if task is None:
        return
    try:
        run_claimed(task)
    finally:
        if str(task.pk) != str(task_id):
            services.task_redispatch(task_id=task_id)


def run_claimed(task: Task) -> None:
    with _lease_kept(task):
        if not services.task_start(task=task):
            task.refresh_from_db()
            if task.state in ACTIVE_STATES and task.cancel_requested:
                services.task_revoke_running(task=task)
            return
        try:
            outputs, metadata = _run_pipeline(task)
        except TaskCancelled:
            services.task_revoke_running(task=task)
            return
        except TaskOverTime:
            services.task_time_out_running(task=task, limit_seconds=policy.run_time_limit_seconds(task.task_type))
            return
        except TaskLost:
            logger.warning("task %s was taken over by another worker; dropping this run", task.pk)
            return
        except PipelineInputError as error:
            services.task_fail(task=task, code=error.code, message=error.message)
            return
        except Exception as error:
            logger.exception("task %s failed", task.pk)
            services.task_fail(task=task, code=_error_code(error), message=f"{type(error).__name__}: {error}")
            return
        stored = outputs_store(task=task, outputs=outputs)
        result = {**metadata, "outputs": stored, "url": stored[0]["url"] if stored else None}
        if not services.task_succeed(task=task, result=result):
            outputs_discard(stored)


def _run_pipeline(task: Task) -> tuple[list[Any], dict[str, Any]]:
    spec = task_type_spec(task.task_type)
    module = importlib.import_module(spec.pipeline_module)
    on_step = StepReporter(task)
    # Inputs are fetched before the model is taken: a slow download must not hold it.
    params = resolve_images(task=task, params=task.params, fields=spec.image_fields)
    with pipeline_cache().use(spec, task.params) as pipeline:
        on_step.check()
        return module.run(pipeline, params, on_step)


def _error_code(error: Exception) -> str:
    if type(error).__name__ == "OutOfMemoryError" or isinstance(error, MemoryError):
        return "OUT_OF_MEMORY"
    if isinstance(error, (OSError, TimeoutError)):
        # A disk, a network share or the storage backend failing: worth another attempt.
        return "TRANSIENT_IO"
    return "PIPELINE_ERROR"


class StepReporter:
    """The pipeline's step callback: stops the run when the job was cancelled, taken
    away or over its run time limit, and writes progress at most every
    PROGRESS_INTERVAL_SECONDS.

    The run time limit is enforced here, between steps, because Dramatiq's time limit
    raises only between Python bytecodes and cannot interrupt a long C/CUDA call."""

    def __init__(self, task: Task):
        self.task = task
        self.interval = settings.BACKSERV["PROGRESS_INTERVAL_SECONDS"]
        self.limit_seconds = policy.run_time_limit_seconds(task.task_type)
        self._last_write = 0.0

    def check(self) -> None:
        row = (
            Task.objects.filter(pk=self.task.pk)
            .values_list("state", "worker", "attempts", "cancel_requested", "started_at")
            .first()
        )
        if row is None or row[0] != TaskState.STARTED or row[1:3] != (self.task.worker, self.task.attempts):
            raise TaskLost()
        if row[3]:
            raise TaskCancelled()
        if (timezone.now() - row[4]).total_seconds() > self.limit_seconds:
            raise TaskOverTime()

    def __call__(self, step: int, total: int) -> None:
        self.check()
        now = time.monotonic()
        if step >= total or now - self._last_write >= self.interval:
            self._last_write = now
            services.task_progress_report(task=self.task, progress=step / total, step=step, total=total)


@contextmanager
def _lease_kept(task: Task) -> Iterator[None]:
    """Renew the job's lease from a side thread while it runs: model loads and long
    steps give the step callback no chance to."""
    stop = threading.Event()
    period = settings.BACKSERV["LEASE_SECONDS"] / 3

    def renew() -> None:
        try:
            while not stop.wait(period):
                if not services.task_lease_renew(task=task):
                    return
        finally:
            # This thread's own connection; nothing else will close it.
            connection.close()

    keeper = threading.Thread(target=renew, name=f"lease-{task.pk}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
