"""What the API answers, as typed values. Each keeps the body it was read from in `raw`,
so a field the server adds later is reachable before this package learns its name."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backserv_client.client import Client

TERMINAL_STATES = frozenset({"SUCCESS", "FAILURE", "TIMEOUT", "REVOKED"})
RETRYABLE_STATES = frozenset({"FAILURE", "TIMEOUT", "REVOKED"})


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Output:
    """One file a job made. `url` is signed: it works without a token until it expires
    (read the job again for a fresh one)."""

    url: str
    content_type: str
    size: int | None = None
    width: int | None = None
    height: int | None = None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Output:
        return cls(
            url=body["url"],
            content_type=body.get("content_type", ""),
            size=body.get("size"),
            width=body.get("width"),
            height=body.get("height"),
        )


@dataclass(frozen=True)
class JobError:
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Job:
    """A job as the API shows it. `download()` fetches its outputs through the client
    that read it."""

    id: str
    task_type: str
    state: str
    progress: float
    params: dict[str, Any]
    priority: int
    result: dict[str, Any] | None
    error: JobError | None
    attempts: int
    queue_position: int | None
    eta_seconds: float | None
    cancel_requested: bool
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    raw: dict[str, Any] = field(repr=False)
    client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_api(cls, body: dict[str, Any], client: Client | None = None) -> Job:
        error = body.get("error")
        return cls(
            id=body["task_id"],
            task_type=body["task_type"],
            state=body["state"],
            progress=body.get("progress") or 0.0,
            params=body.get("params") or {},
            priority=body.get("priority", 5),
            result=body.get("result"),
            error=JobError(code=error.get("code", ""), message=error.get("message", "")) if error else None,
            attempts=body.get("attempts", 0),
            queue_position=body.get("queue_position"),
            eta_seconds=body.get("eta_seconds"),
            cancel_requested=body.get("cancel_requested", False),
            submitted_at=_moment(body.get("submitted_at")),
            started_at=_moment(body.get("started_at")),
            completed_at=_moment(body.get("completed_at")),
            raw=body,
            client=client,
        )

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCESS"

    @property
    def outputs(self) -> list[Output]:
        return [Output.from_api(output) for output in (self.result or {}).get("outputs", [])]

    def download(self, destination: str | Path | None = None) -> list[Path]:
        """Save the outputs (see Client.download) and return their paths."""
        if self.client is None:
            raise RuntimeError("This job was not read through a Client; use Client.download(job).")
        return self.client.download(self, destination)


@dataclass(frozen=True)
class Event:
    """One entry of a job's event log, as the SSE stream carries it. `step`/`total`
    are set on progress events; `data` holds what other types carry (worker, error)."""

    id: int
    task_id: str
    type: str
    state: str
    created_at: datetime | None
    progress: float | None = None
    step: int | None = None
    total: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Event:
        return cls(
            id=body["id"],
            task_id=body["task_id"],
            type=body["type"],
            state=body["state"],
            created_at=_moment(body.get("created_at")),
            progress=body.get("progress"),
            step=body.get("step"),
            total=body.get("total"),
            data=body.get("data") or {},
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Upload:
    """An uploaded image; pass `reference` (`upload:<id>`) as an image param."""

    id: str
    reference: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    created_at: datetime | None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Upload:
        return cls(
            id=body["id"],
            reference=body["reference"],
            content_type=body.get("content_type", ""),
            size=body.get("size", 0),
            width=body.get("width"),
            height=body.get("height"),
            created_at=_moment(body.get("created_at")),
        )


@dataclass(frozen=True)
class TaskType:
    """A task type the server knows; `available` is false where its model is missing."""

    name: str
    description: str
    params_schema: dict[str, Any]
    defaults: dict[str, Any]
    limits: dict[str, Any]
    available: bool
    models: Any
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> TaskType:
        return cls(
            name=body["name"],
            description=body.get("description", ""),
            params_schema=body.get("params_schema") or {},
            defaults=body.get("defaults") or {},
            limits=body.get("limits") or {},
            available=bool(body.get("available", True)),
            models=body.get("models"),
            raw=body,
        )


@dataclass(frozen=True)
class Usage:
    """Your jobs over a period: the totals, and the breakdowns (per task type, per day)
    under the names the server gives them."""

    jobs: int
    succeeded: int
    failed: int
    gpu_seconds: float
    breakdowns: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Usage:
        return cls(
            jobs=body.get("jobs", 0),
            succeeded=body.get("succeeded", 0),
            failed=body.get("failed", 0),
            gpu_seconds=body.get("gpu_seconds", 0.0),
            breakdowns={key: value for key, value in body.items() if isinstance(value, list | dict)},
            raw=body,
        )
