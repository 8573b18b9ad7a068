"""A job followed live on stderr: a progress bar with its state, step/total and, while
it waits, its place in the queue.

The event stream is read on a thread of its own, so the main thread stays free to take
Ctrl-C at once and to refresh the queue position (which no event of this job carries:
it moves as other jobs are claimed). That refresh is a read every few seconds, well
inside the per-user rate limit, and one refused (429) is skipped, not fatal.
"""

from __future__ import annotations

import queue
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from backserv_client.client import Client
from backserv_client.errors import ApiError
from backserv_client.models import Event, Job

QUEUE_POLL_SECONDS = 5.0
TICK_SECONDS = 0.5
_END = None


class _EventReader(threading.Thread):
    def __init__(self, client: Client, job_id: str) -> None:
        super().__init__(name="backserv-events", daemon=True)
        self.client = client
        self.job_id = job_id
        self.items: queue.Queue[Event | Exception | None] = queue.Queue()

    def run(self) -> None:
        try:
            for event in self.client.stream(self.job_id):
                self.items.put(event)
        except Exception as error:
            # Raised again on the main thread, which reports it.
            self.items.put(error)
        else:
            self.items.put(_END)


def _waiting_text(job: Job) -> str:
    if job.queue_position is None:
        return ""
    eta = f", ~{job.eta_seconds:.0f}s" if job.eta_seconds is not None else ""
    return f"queue position {job.queue_position}{eta}"


class JobProgress:
    """The bar of one job. On a terminal it redraws in place; elsewhere (a log, a pipe)
    each change of state is also printed as a line, and the bar's last state at the end."""

    def __init__(self, console: Console, job: Job) -> None:
        self.console = console
        self.state = job.state
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            TextColumn("{task.fields[state]:<8}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}"),
            TextColumn("{task.fields[waiting]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.bar.add_task(job.task_type, total=None, state=job.state, steps="", waiting=_waiting_text(job))
        self._log_state(job.state, _waiting_text(job))

    def __enter__(self) -> JobProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()

    def _log_state(self, state: str, detail: str = "") -> None:
        if not self.console.is_terminal:
            self.console.print(f"{state} {detail}".rstrip())

    def show_event(self, event: Event) -> None:
        if event.step is not None and event.total:
            self.bar.update(
                self.task, completed=event.step, total=event.total, steps=f"{event.step}/{event.total} steps"
            )
        if event.state != self.state:
            self.state = event.state
            waiting = "" if event.state != "PENDING" else self.bar.tasks[0].fields["waiting"]
            self.bar.update(self.task, state=event.state, waiting=waiting)
            self._log_state(event.state)

    def show_job(self, job: Job) -> None:
        if job.state == "PENDING" and self.state == "PENDING":
            self.bar.update(self.task, waiting=_waiting_text(job))

    def finish(self, job: Job) -> None:
        total = self.bar.tasks[0].total
        if job.succeeded and total:
            self.bar.update(self.task, completed=total)
        self.bar.update(self.task, state=job.state, waiting="")


def follow(client: Client, job: Job, console: Console, *, timeout: float | None = None) -> Job:
    """Show the job's progress until it finishes; return it as it finished.
    TimeoutError after `timeout` seconds (the job goes on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    polled_at = time.monotonic()
    reader = _EventReader(client, job.id)
    reader.start()
    with JobProgress(console, job) as view:
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{job.id} is still {view.state} after {timeout:g}s (it goes on running).")
            try:
                item = reader.items.get(timeout=TICK_SECONDS)
            except queue.Empty:
                if view.state == "PENDING" and time.monotonic() - polled_at >= QUEUE_POLL_SECONDS:
                    polled_at = time.monotonic()
                    _refresh_queue_position(client, job.id, view)
                continue
            if item is _END:
                break
            if isinstance(item, Exception):
                raise item
            view.show_event(item)
        job = client.get(job.id)
        view.finish(job)
    return job


def _refresh_queue_position(client: Client, job_id: str, view: JobProgress) -> None:
    try:
        view.show_job(client.get(job_id))
    except ApiError as error:
        if error.status != 429:
            raise
