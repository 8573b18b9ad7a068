"""Running one job inside a worker: claim, start, run the pipeline, record the outcome.

Every write goes through tasks.services, so the runner can lose a race (a cancel, a
sweep that reaped its lease) and simply stop: the services refuse the stale write.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from backserv_site.db import connection_done, retried_on_reconnect
from generation.acceleration import dynamic_batch_size
from generation.delivery import output_put
from generation.finishing import InlineFinishing, OverlappedFinishing, finishing_stage, outputs_encode
from generation.inputs import resolve_images
from generation.models_cache import pipeline_cache
from generation.outputs import outputs_discard, outputs_store
from generation.pipelines.base import PipelineInputError
from generation.specs import task_type_spec
from servers.routing import routing_deferred, routing_pass_taken, tasks_route_waiting
from tasks import policy, services
from tasks.models import Task, TaskState

logger = logging.getLogger(__name__)


# The first pause before a write or read is tried again on a fresh connection.
DATABASE_RETRY_PAUSE_SECONDS = 0.2


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

    Waiting jobs that can share the claimed job's pipeline call are claimed with it
    (dynamic batching); their own messages then find them taken and do nothing. Once
    a run ends the thread claims the queue's next best job itself, for up to
    WORKER_SPELL_SECONDS: the GPU does not sit idle for a message's round trip between
    two waiting jobs. The routing pass a run's end asks for (its slots are free) runs
    before the next claim.
    """
    if _worker_stopping():
        # Taken just as the worker was told to stop (SIGTERM): a stopping worker claims
        # nothing, and the job's message goes back for another worker.
        services.task_redispatch(task_id=task_id)
        return
    hint = Task.objects.filter(pk=task_id).values_list("state", "queue_name").first()
    if hint is None or hint[0] != TaskState.PENDING or not hint[1]:
        return
    if queue_name is not None and hint[1] != queue_name:
        return
    worker = worker_name()
    spell_ends = time.monotonic() + settings.BACKSERV["WORKER_SPELL_SECONDS"]
    claimed_any = hinted_claimed = False
    with routing_deferred(), finishing_stage() as finishing:
        try:
            while True:
                if routing_pass_taken():
                    _route_freed_slots()
                batch = _take_batch(queue_name=hint[1], worker=worker)
                if not batch:
                    return
                claimed_any = True
                hinted_claimed = hinted_claimed or any(str(claimed.pk) == str(task_id) for claimed in batch)
                run_started(batch, finishing)
                if _worker_stopping() or time.monotonic() > spell_ends:
                    return
        finally:
            # A message that found nothing claimable (X in a retry's backoff, say) is
            # not sent again: X has its own delayed message, and the sweep covers a
            # lost one.
            if claimed_any and not hinted_claimed:
                services.task_redispatch(task_id=task_id)


def _worker_stopping() -> bool:
    """Whether this Dramatiq worker thread was told to stop (a SIGTERM): it then takes
    no further job, so a shutdown waits for running jobs only."""
    return not getattr(threading.current_thread(), "running", True)


def _route_freed_slots() -> None:
    """The routing pass the last run's end asked for: jobs waiting for a server take the
    slots it freed (this queue's next job among them, maybe, which this thread then
    takes without waiting for its message).

    It runs here, between runs, not beside the next one: its Python time held the GIL
    the pipeline thread needed and made the run longer by more than its own time
    (bench/README.md, "Measurements behind the design"); between runs it costs only that."""
    try:
        tasks_route_waiting()
    except Exception:
        # The sweep routes whatever this pass left waiting.
        logger.exception("routing waiting jobs failed")


def _take_batch(*, queue_name: str, worker: str) -> list[Task]:
    """The queue's best waiting job and the companions that can share its pipeline
    call, claimed and started."""
    return services.tasks_claim_and_start(queue_name=queue_name, worker=worker, size=dynamic_batch_size())


def run_started(tasks: list[Task], finishing: InlineFinishing | OverlappedFinishing) -> None:
    """Run started jobs of one batch key (or a single job) as one pipeline call, then
    hand their finishing (encode, store, record each job's own outcome) to `finishing`."""
    with routing_deferred(), _side_thread(tasks):
        steps = BatchSteps(tasks)
        results = _run_started(tasks, steps)
    if results is not None:
        finishing.hand_off(partial(_finish_started, tasks, steps, results))


def _run_started(started: list[Task], steps: BatchSteps) -> list[tuple[list[Any], dict[str, Any]]] | None:
    """The pipeline call of started jobs: their outputs, or None when the call failed
    or every job stopped (each job is then settled)."""
    began = time.perf_counter()
    try:
        results = _run_pipeline(started, steps)
    except BatchStopped:
        return None
    except PipelineInputError as error:
        for task in steps.running:
            services.task_fail(task=task, code=error.code, message=error.message, batch_size=len(started))
        return None
    except Exception as error:
        logger.exception("task(s) %s failed", ", ".join(str(task.pk) for task in steps.running))
        message = f"{type(error).__name__}: {error}"
        for task in steps.running:
            services.task_fail(task=task, code=_error_code(error), message=message, batch_size=len(started))
        return None
    seconds = time.perf_counter() - began
    logger.info(
        "pipeline call",
        extra={"task_type": started[0].task_type, "batch": len(started), "pipeline_s": round(seconds, 4)},
    )
    return results


def _finish_started(started: list[Task], steps: BatchSteps, results: list[tuple[list[Any], dict[str, Any]]]) -> None:
    """Store the outputs of the jobs still running and record their success; the lease
    stays renewed until they are recorded."""
    # A job stopped mid-batch was settled then; its outputs are discarded.
    kept = [(task, outputs, metadata) for task, (outputs, metadata) in zip(started, results, strict=True)]
    kept = [(task, outputs, metadata) for task, outputs, metadata in kept if task in steps.running]
    finished: list[tuple[Task, dict[str, Any]]] = []
    with _side_thread(started):
        try:
            outputs_encode([output for _, outputs, _ in kept for output in outputs])
            for task, outputs, metadata in kept:
                result = _deliver(task, outputs, metadata, batch_size=len(started))
                if result is not None:
                    finished.append((task, result))
            # The work is done: recording it is worth waiting out a database restart.
            succeeded = retried_on_reconnect(
                lambda: services.tasks_succeed(
                    finished=[(task, result, steps.reporters[task.pk].last_step) for task, result in finished],
                    batch_size=len(started),
                ),
                attempts=5,
                pause_seconds=4 * DATABASE_RETRY_PAUSE_SECONDS,
            )
        except Exception as error:
            # An encoder or the storage failing (a full disk, say): worth another attempt.
            logger.exception("storing the outputs of %s failed", ", ".join(str(task.pk) for task, _, _ in kept))
            message = f"{type(error).__name__}: {error}"
            for task, _, _ in kept:
                services.task_fail(task=task, code=_error_code(error), message=message, batch_size=len(started))
            succeeded = []
        for task, result in finished:
            if task not in succeeded:
                outputs_discard(result["outputs"])


def _deliver(task: Task, outputs: list[Any], metadata: dict[str, Any], *, batch_size: int) -> dict[str, Any] | None:
    """Store a finished job's outputs (and PUT the first to its output URL, if it has
    one); returns its result, or None when the job failed on the way."""
    output_url = task.params.get("output_url")
    if output_url and outputs:
        try:
            output_put(url=output_url, output=outputs[0])
        except PipelineInputError as error:
            services.task_fail(task=task, code=error.code, message=error.message, batch_size=batch_size)
            return None
        metadata = {**metadata, "output_url": output_url}
    stored = outputs_store(task=task, outputs=outputs)
    return {**metadata, "outputs": stored, "url": stored[0]["url"] if stored else None}


def _run_pipeline(tasks: list[Task], steps: BatchSteps) -> list[tuple[list[Any], dict[str, Any]]]:
    spec = task_type_spec(tasks[0].task_type)
    module = importlib.import_module(spec.pipeline_module)
    # Inputs are fetched before the model is taken: a slow download must not hold it.
    # (Batched types take no image inputs, so a bad input only ever fails its own job.)
    params = [resolve_images(task=task, params=task.params, fields=spec.image_fields) for task in tasks]
    with pipeline_cache().use(spec, tasks[0].params) as pipeline:
        steps.check()
        if len(tasks) == 1:
            return [module.run(pipeline, params[0], steps)]
        return module.run_batch(pipeline, params, steps)


def _error_code(error: Exception) -> str:
    if type(error).__name__ == "OutOfMemoryError" or isinstance(error, MemoryError):
        return "OUT_OF_MEMORY"
    if isinstance(error, (OSError, TimeoutError, OperationalError, InterfaceError)):
        # A disk, a network share, the storage backend or the database connection
        # failing (a step's check runs a query): worth another attempt.
        return "TRANSIENT_IO"
    return "PIPELINE_ERROR"


# Given for a job's row at a step after which the rows were not read (see BatchSteps).
UNREAD: Any = object()


class BatchStopped(Exception):
    """Every job of the pipeline call was stopped (cancelled, timed out or lost)."""


class BatchSteps:
    """The step callback of one pipeline call: each job's own StepReporter checks and
    reports it. A job stopped mid-call is settled at once (REVOKED, TIMEOUT, or left to
    its new owner when lost) and its share of the work discarded; the call goes on for
    the others and is abandoned when none is left.

    One read fetches what every job's check needs, after a step once
    CANCEL_CHECK_INTERVAL_SECONDS have passed since the last (every step of a real
    model; every few of a tiny one, whose steps take milliseconds and whose run a read
    per step slowed by half). It is compiled once and costs one indexed read, not an
    ORM query build per job."""

    def __init__(self, tasks: list[Task]):
        self.reporters = {task.pk: StepReporter(task) for task in tasks}
        self.running = list(tasks)
        # The jobs the call started with, who share its GPU time.
        self.batch_size = len(tasks)
        self.read_interval = settings.BACKSERV["CANCEL_CHECK_INTERVAL_SECONDS"]
        self._last_read = -math.inf
        self._check_sql = (
            Task.objects.filter(pk__in=[task.pk for task in tasks])
            .values_list("pk", "state", "worker", "attempts", "cancel_requested")
            .query
        ).sql_with_params()

    def check(self) -> None:
        self._each(lambda reporter, row: reporter.check(row))

    def __call__(self, step: int, total: int) -> None:
        self._each(lambda reporter, row: reporter(row, step, total))

    def _rows(self) -> dict[str, tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(*self._check_sql)
            # The id comes back as the backend stores it (a UUID, or SQLite's hex).
            return {str(UUID(str(row[0]))): row[1:] for row in cursor.fetchall()}

    def _rows_unless_away(self) -> dict[str, tuple[Any, ...]] | None:
        """The rows, or None while the database is away: a blip must not throw the
        call's work away, so this step checks the deadlines only."""
        try:
            return retried_on_reconnect(self._rows, attempts=2, pause_seconds=DATABASE_RETRY_PAUSE_SECONDS)
        except (OperationalError, InterfaceError):
            logger.warning("could not read the running jobs' rows; checking them at a later step", exc_info=True)
            return None

    def _each(self, call: Any) -> None:
        now = time.monotonic()
        rows: dict[str, tuple[Any, ...]] | None = None
        if now - self._last_read >= self.read_interval:
            rows, self._last_read = self._rows_unless_away(), now
        for task in list(self.running):
            try:
                call(self.reporters[task.pk], UNREAD if rows is None else rows.get(str(task.pk)))
            except TaskCancelled:
                services.task_revoke_running(task=task, batch_size=self.batch_size)
            except TaskOverTime:
                limit = policy.run_time_limit_seconds(task.task_type)
                services.task_time_out_running(task=task, limit_seconds=limit, batch_size=self.batch_size)
            except TaskLost:
                logger.warning("task %s was taken over by another worker; dropping this run", task.pk)
            else:
                continue
            self.running.remove(task)
        if not self.running:
            raise BatchStopped()


class StepReporter:
    """One job's part of the step callback: stops its run when the job was cancelled,
    taken away or over its run time limit, and writes progress at most every
    PROGRESS_INTERVAL_SECONDS (the first write too: a job shorter than that writes
    only its last step's, and that one goes with its success).

    The run time limit is enforced here, between steps, because Dramatiq's time limit
    raises only between Python bytecodes and cannot interrupt a long C/CUDA call."""

    def __init__(self, task: Task):
        self.task = task
        self.interval = settings.BACKSERV["PROGRESS_INTERVAL_SECONDS"]
        # Created as the job starts; the clock is monotonic so a clock step cannot end it.
        self.deadline = time.monotonic() + policy.run_time_limit_seconds(task.task_type)
        self._last_write = time.monotonic()
        self.last_step: tuple[int, int] | None = None

    def check(self, row: tuple[Any, ...] | None) -> None:
        """`row`: the job's state, worker, attempts and cancel flag as just read (None:
        the job is gone; UNREAD: not read at this step, only the deadline is checked)."""
        if row is UNREAD:
            if time.monotonic() > self.deadline:
                raise TaskOverTime()
            return
        if row is None or row[0] != TaskState.STARTED or (row[1], row[2]) != (self.task.worker, self.task.attempts):
            raise TaskLost()
        if row[3]:
            raise TaskCancelled()
        if time.monotonic() > self.deadline:
            raise TaskOverTime()

    def __call__(self, row: tuple[Any, ...] | None, step: int, total: int) -> None:
        self.check(row)
        if step >= total:
            # Written with the job's success, in the same transaction.
            self.last_step = (step, total)
            return
        now = time.monotonic()
        if now - self._last_write >= self.interval:
            self._last_write = now
            progress = step / total
            report = partial(services.task_progress_report, task=self.task, progress=progress, step=step, total=total)
            try:
                retried_on_reconnect(report, attempts=2, pause_seconds=DATABASE_RETRY_PAUSE_SECONDS)
            except (OperationalError, InterfaceError):
                # Progress is for watching; the run goes on, and so does the next write.
                logger.warning("could not write the progress of task %s", self.task.pk, exc_info=True)


@contextmanager
def _side_thread(tasks: list[Task]) -> Iterator[None]:
    """The run's side thread: renews the jobs' leases while they run (model loads and
    long steps give the step callback no chance to)."""
    stop = threading.Event()
    period = settings.BACKSERV["LEASE_SECONDS"] / 3

    def work() -> None:
        try:
            held = list(tasks)
            while held and not stop.wait(period):
                held = [task for task in held if services.task_lease_renew(task=task)]
                connection_done()
        finally:
            # This thread's own connection; nothing else will close it.
            connection.close()

    side = threading.Thread(target=work, name=f"side-{tasks[0].pk}", daemon=True)
    side.start()
    try:
        yield
    finally:
        stop.set()
        side.join()
