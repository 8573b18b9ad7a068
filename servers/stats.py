"""One server's statistics of a day, from the jobs it finished and its status changes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from servers.models import Server
from servers.selectors import server_uptime
from tasks.models import Task
from tasks.stats import day_bounds, server_outcomes


def stats_server(*, server: Server, day: date, now: datetime | None = None) -> dict[str, Any]:
    """One server's day: the jobs it finished that day (by completion time) and the
    fraction of the day, so far, it was online."""
    start, end = day_bounds(day)
    outcomes = server_outcomes(Task.objects.filter(server=server, completed_at__gte=start, completed_at__lt=end))
    figures = (
        outcomes[0]
        if outcomes
        else {
            "tasks_processed": 0,
            "success_count": 0,
            "failure_count": 0,
            "success_rate": None,
            "average_processing_time_ms": None,
        }
    )
    return {
        "server_id": str(server.pk),
        "name": server.name,
        "date": day.isoformat(),
        **{key: value for key, value in figures.items() if key not in ("server_id", "name")},
        "uptime": server_uptime(server=server, start=start, end=end, now=now),
    }
