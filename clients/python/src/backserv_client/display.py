"""How the CLI shows jobs, task types and usage to a person (`--json` prints the API's
own bodies instead, for scripts)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from backserv_client.models import Job, TaskType, Usage

STATE_STYLES = {"SUCCESS": "green", "FAILURE": "red", "TIMEOUT": "red", "REVOKED": "yellow"}


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _state(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{escape(state)}[/]" if style else escape(state)


def job_table(job: Job) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("id", job.id),
        ("task type", job.task_type),
        ("state", _state(job.state) + (" (cancel requested)" if job.cancel_requested else "")),
        ("progress", f"{job.progress:.0%}"),
    ]
    if job.queue_position is not None:
        rows.append(("queue position", str(job.queue_position)))
    rows += [
        ("attempts", str(job.attempts)),
        ("submitted", _when(job.submitted_at)),
        ("started", _when(job.started_at)),
        ("completed", _when(job.completed_at)),
    ]
    if job.error:
        rows.append(("error", str(job.error)))
    rows += [(f"output {index}", output.url) for index, output in enumerate(job.outputs)]
    for name, value in rows:
        table.add_row(name, value if name == "state" else escape(value))
    return table


def jobs_table(jobs: Iterable[Job]) -> Table:
    # The id whole, never cut: it is what the other commands take.
    table = Table(Column("id", no_wrap=True), "task type", "state", "submitted (UTC)", box=None, pad_edge=False)
    for job in jobs:
        state = _state(job.state) + (f" {job.progress:.0%}" if job.state == "STARTED" else "")
        submitted = job.submitted_at.strftime("%Y-%m-%d %H:%M") if job.submitted_at else ""
        table.add_row(escape(job.id), escape(job.task_type), state, submitted)
    return table


def task_types_table(task_types: Iterable[TaskType]) -> Table:
    table = Table("name", "available", "description")
    for task_type in task_types:
        available = "[green]yes[/]" if task_type.available else "[red]no[/]"
        table.add_row(escape(task_type.name), available, escape(task_type.description))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict | list):
        return escape(json.dumps(value))
    return "" if value is None else escape(str(value))


# A breakdown's columns as the totals' table names them.
_HEADERS = {"gpu_seconds": "GPU seconds"}


def breakdown_table(title: str, rows: Any) -> Table:
    """A breakdown in whichever shape it comes: a list of objects, or an object of
    objects (or of numbers) keyed by task type or day."""
    if isinstance(rows, dict):
        key_name = title.removeprefix("by_").removeprefix("per_").rstrip("s") or "key"
        rows = [
            {key_name: key, **(value if isinstance(value, dict) else {"value": value})} for key, value in rows.items()
        ]
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    headers = (_HEADERS.get(column, column.replace("_", " ")) for column in columns)
    table = Table(*(escape(header) for header in headers), title=escape(title.replace("_", " ")))
    for row in rows:
        table.add_row(*(_cell(row.get(name)) for name in columns))
    return table


def print_usage(console: Console, usage: Usage) -> None:
    totals = Table("jobs", "succeeded", "failed", "GPU seconds", title="usage")
    totals.add_row(str(usage.jobs), str(usage.succeeded), str(usage.failed), f"{usage.gpu_seconds:.1f}")
    console.print(totals)
    for name, rows in usage.breakdowns.items():
        if rows:
            console.print(breakdown_table(name, rows))
