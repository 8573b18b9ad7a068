"""The Back.Serv client: one object holding the server's URL, your token and a pooled
HTTP connection.

    client = Client()  # BACKSERV_URL (default http://127.0.0.1:8000) and BACKSERV_TOKEN
    job = client.run("image_creation", prompt="a lighthouse at dusk", steps=20)
    job.download("out.png")

Submits always carry an Idempotency-Key (a fresh one unless you pass yours), and a
submit whose answer was lost (a dropped connection, a 502/503/504) is sent again with
the same key: the server answers with the job the first attempt made, never a second.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from backserv_client._version import __version__
from backserv_client.downloads import fetch_to, output_paths
from backserv_client.errors import RETRY_STATUSES, ApiError, ConnectionFailed
from backserv_client.events import follow_events
from backserv_client.models import Event, Job, TaskType, Upload, Usage

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
MAX_PREFER_WAIT_SECONDS = 300
# run(): how long the submit itself waits for the job before following its events.
RUN_PREFER_WAIT_SECONDS = 30
MAX_RETRY_SLEEP_SECONDS = 10.0

EventCallback = Callable[[Event], None]


def _backoff(attempt: int, response: httpx.Response | None = None) -> float:
    retry_after = response.headers.get("Retry-After", "") if response is not None else ""
    if retry_after.isdigit():
        return min(float(retry_after), MAX_RETRY_SLEEP_SECONDS)
    return min(0.5 * 2**attempt, MAX_RETRY_SLEEP_SECONDS)


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Client:
    """Talks to one Back.Serv server. `url` and `token` default to the BACKSERV_URL and
    BACKSERV_TOKEN environment variables; `retries` is how many times a submit or a
    read is sent again after a dropped connection or a 502/503/504."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0, retries: int = 3
    ) -> None:
        self.url = (url or os.environ.get("BACKSERV_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("BACKSERV_TOKEN", "")
        headers = {"User-Agent": f"backserv-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.retries = retries
        self._http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers, timeout=timeout)
        # Output links are signed and work without a token; they may point at another
        # host (S3), which must never see the token.
        self._files = httpx.Client(timeout=timeout, follow_redirects=True)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def _request(self, method: str, path: str, *, retry: bool = False, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ApiError for an error status, ConnectionFailed when the
        server cannot be reached. With `retry`, dropped connections and 502/503/504 are
        tried again (only for requests that are safe to repeat)."""
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            last_try = attempt + 1 == attempts
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
                raise ConnectionFailed(f"{method} {self.url}{API_PREFIX}{path}: {error}") from error
            except httpx.TransportError as error:
                if last_try:
                    raise ConnectionFailed(f"{method} {self.url}{API_PREFIX}{path}: {error!r}") from error
                time.sleep(_backoff(attempt))
                continue
            if response.status_code in RETRY_STATUSES and not last_try:
                time.sleep(_backoff(attempt, response))
                continue
            if response.is_error:
                raise ApiError.from_response(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _job(self, response: httpx.Response) -> Job:
        return Job.from_api(response.json(), self)

    def submit(
        self,
        task_type: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        webhook: str | None = None,
        webhook_events: list[str] | None = None,
        queue_timeout: int | None = None,
        max_attempts: int | None = None,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a job and return it as queued. A param given as a `pathlib.Path` is
        uploaded first and sent as its `upload:<id>` reference. With `wait` (seconds,
        at most 300) the server holds the answer until the job finishes or the wait
        runs out (`Prefer: wait`)."""
        body = {
            "task_type": task_type,
            "params": self._with_uploads(params or {}),
            **_without_none(
                {
                    "priority": priority,
                    "webhook": webhook,
                    "webhook_events": webhook_events,
                    "queue_timeout": queue_timeout,
                    "max_attempts": max_attempts,
                }
            ),
        }
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        kwargs: dict[str, Any] = {}
        if wait:
            seconds = min(math.ceil(wait), MAX_PREFER_WAIT_SECONDS)
            headers["Prefer"] = f"wait={seconds}"
            kwargs["timeout"] = httpx.Timeout(self._http.timeout.connect, read=seconds + 30.0)
        # The same key and body on every attempt: a retry finds the job, never makes one.
        return self._job(self._request("POST", "/tasks", retry=True, json=body, headers=headers, **kwargs))

    def _with_uploads(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: self.upload(value).reference if isinstance(value, os.PathLike) else value
            for name, value in params.items()
        }

    def get(self, job_id: str) -> Job:
        return self._job(self._request("GET", f"/tasks/{job_id}", retry=True))

    def list_jobs(
        self, *, state: str | None = None, task_type: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Job]:
        """Your jobs, newest first."""
        query = _without_none({"state": state, "task_type": task_type, "limit": limit, "offset": offset})
        body = self._request("GET", "/tasks", retry=True, params=query).json()
        rows = body["results"] if isinstance(body, dict) else body
        return [Job.from_api(row, self) for row in rows]

    def cancel(self, job_id: str) -> Job:
        """A queued job is REVOKED at once; a running one stops within one step."""
        return self._job(self._request("POST", f"/tasks/{job_id}/cancel"))

    def retry(self, job_id: str) -> Job:
        """Queue a FAILURE, TIMEOUT or REVOKED job again."""
        return self._job(self._request("POST", f"/tasks/{job_id}/retry"))

    def stream(self, job_id: str, *, last_event_id: int | None = None, timeout: float | None = None) -> Iterator[Event]:
        """The job's events (Server-Sent Events), from the first one or after
        `last_event_id`, until its terminal event. A dropped connection is resumed
        where it stopped. TimeoutError after `timeout` seconds without the end."""
        return follow_events(
            self._http, f"/tasks/{job_id}/events", last_event_id=last_event_id, timeout=timeout, retries=self.retries
        )

    def wait(self, job_id: str, *, timeout: float | None = None, on_event: EventCallback | None = None) -> Job:
        """The job once finished (SUCCESS, FAILURE, TIMEOUT or REVOKED), following its
        event stream; `on_event` sees each event, from the first. TimeoutError after
        `timeout` seconds."""
        job = self.get(job_id)
        if job.finished and on_event is None:
            return job
        for event in self.stream(job_id, timeout=timeout):
            if on_event is not None:
                on_event(event)
        return self.get(job_id)

    def run(
        self,
        task_type: str,
        /,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        priority: int | None = None,
        webhook: str | None = None,
        **params: Any,
    ) -> Job:
        """Submit a job and return it finished. The submit waits for the job itself
        (`Prefer: wait`), and a job still running then is followed over its event
        stream; with `on_event` it is followed from the start. Check `job.state`:
        run() returns failed jobs too."""
        started = time.monotonic()
        prefer_wait = 0 if on_event else min(RUN_PREFER_WAIT_SECONDS, timeout or RUN_PREFER_WAIT_SECONDS)
        job = self.submit(task_type, params, priority=priority, webhook=webhook, wait=prefer_wait)
        if job.finished:
            return job
        remaining = None if timeout is None else max(timeout - (time.monotonic() - started), 0.1)
        return self.wait(job.id, timeout=remaining, on_event=on_event)

    def upload(self, path: str | os.PathLike[str]) -> Upload:
        """Upload an image; its `reference` (`upload:<id>`) goes in an image param."""
        path = Path(path)
        with path.open("rb") as file:
            response = self._request("POST", "/uploads", files={"file": (path.name, file)})
        return Upload.from_api(response.json())

    def download(self, job: Job | str, destination: str | os.PathLike[str] | None = None) -> list[Path]:
        """Save a finished job's outputs and return their paths. One output goes to
        `destination` when that names a file (`out.png`); otherwise `destination` (the
        current directory by default) is a folder, made if missing, that gets
        `<job id>-<n>.<ext>` for each output."""
        job = job if isinstance(job, Job) else self.get(job)
        outputs = job.outputs
        paths = output_paths(job.id, outputs, destination)
        for output, path in zip(outputs, paths, strict=True):
            fetch_to(self._files, urljoin(self.url + "/", output.url), path)
        return paths

    def webhook_secret(self) -> str:
        """Your webhook signing secret (`whsec_...`), for verify_webhook."""
        return self._request("GET", "/webhook-secret", retry=True).json()["secret"]

    def task_types(self) -> list[TaskType]:
        body = self._request("GET", "/task-types", retry=True).json()
        return [TaskType.from_api(row) for row in body["task_types"]]

    def usage(
        self, *, date_from: date | str | None = None, date_to: date | str | None = None, user: str | None = None
    ) -> Usage:
        """Your jobs, successes, failures and GPU seconds from `date_from` to `date_to`
        (days, inclusive; the server's defaults when absent); `user` is for staff."""
        query = _without_none({"from": date_from, "to": date_to, "user": user})
        query = {name: value.isoformat() if isinstance(value, date) else value for name, value in query.items()}
        return Usage.from_api(self._request("GET", "/usage", retry=True, params=query).json())
