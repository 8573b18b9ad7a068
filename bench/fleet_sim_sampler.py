"""What bench/fleet_sim.py samples while the simulated fleet runs: the CPU of each of
its parts (from /proc: Postgres, Redis, the worker processes, the API, the bench
itself, and the whole host, so what other people's work took is known too), and
Postgres' own view (pg_stat_activity: connections by state, sessions waiting on a
heavyweight lock or an LWLock and the statements they wait in; pg_locks: lock requests
not granted); and, over a whole run, Postgres' commits (pg_stat_database) and the
statements that took its time (pg_stat_statements). Linux only."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

_ACTIVITY = """
SELECT count(*),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE state = 'idle'),
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%'),
       count(*) FILTER (WHERE wait_event_type = 'Lock'),
       count(*) FILTER (WHERE wait_event_type = 'LWLock')
FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""
_LOCK_WAITERS = """
SELECT wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_activity
WHERE datname = %s AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""
_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
_NOT_GRANTED = "SELECT count(*) FROM pg_locks WHERE NOT granted"
ACTIVITY_FIELDS = ("connections", "active", "idle", "idle_in_transaction", "lock_waits", "lwlock_waits")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields follow the last ")".
    return text[text.rindex(")") + 2 :].split()


@dataclass(frozen=True)
class _Process:
    parent: int
    session: int
    # With the CPU of the children it has reaped: a Postgres backend that ended, or a
    # worker's forked child, still counts, in its parent's.
    cpu_seconds: float


class ProcessTable:
    """Every process of the host, read once a sample."""

    def __init__(self) -> None:
        self.processes: dict[int, _Process] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = _stat_fields(int(entry.name))
                if fields is not None:
                    # ppid, session; utime, stime, cutime, cstime: fields 4, 6, 14-17, 1-based.
                    cpu = sum(int(value) for value in fields[11:15]) / TICKS_PER_SECOND
                    self.processes[int(entry.name)] = _Process(int(fields[1]), int(fields[3]), cpu)

    def cpu(self, pids: Iterable[int]) -> float:
        return sum(self.processes[pid].cpu_seconds for pid in set(pids) if pid in self.processes)

    def with_children(self, pid: int) -> list[int]:
        return [pid, *(child for child, process in self.processes.items() if process.parent == pid)]

    def sessions(self, session_ids: Iterable[int]) -> list[int]:
        """Every process of these sessions (a Process the bench starts leads its own)."""
        wanted = set(session_ids)
        return [pid for pid, process in self.processes.items() if process.session in wanted]


# A part of the fleet: its processes, found in each sample's table (they come and go).
Part = Callable[[ProcessTable], Iterable[int]]


def host_busy_seconds() -> float:
    """CPU time spent by every core on anything but idling, since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / TICKS_PER_SECOND


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]
    host_busy: float
    activity: dict[str, int]
    not_granted: int


@dataclass
class Sampler:
    parts: dict[str, Part]
    database_url: str
    database: str
    interval: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    # What sessions waiting on a lock were running: (lock type, statement) -> samples.
    lock_waiters: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.backend_pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet-sim-sampler", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while not self._stop.wait(self.interval):
                sample = self._sample(connection)
                with self._lock:
                    self.samples.append(sample)

    def _sample(self, connection: psycopg.Connection) -> Sample:
        # Before the table is read: a shared server's part is the fleet database's backends.
        self.backend_pids = [row[0] for row in connection.execute(_BACKENDS, [self.database]).fetchall()]
        table = ProcessTable()
        cpu = {name: table.cpu(part(table)) for name, part in self.parts.items()}
        activity = connection.execute(_ACTIVITY, [self.database]).fetchone()
        waiters = connection.execute(_LOCK_WAITERS, [self.database]).fetchall()
        not_granted = connection.execute(_NOT_GRANTED).fetchone()
        with self._lock:
            self.lock_waiters.update((event, query) for event, query in waiters)
        return Sample(
            at=time.time(),
            cpu=cpu,
            host_busy=host_busy_seconds(),
            activity=dict(zip(ACTIVITY_FIELDS, activity or (0,) * len(ACTIVITY_FIELDS), strict=True)),
            not_granted=not_granted[0] if not_granted else 0,
        )

    def window(self, start: float, end: float) -> dict[str, Any]:
        """What was sampled between two times (time.time()): each part's CPU in cores,
        the host's, what the rest of the machine took, and Postgres' connections and
        lock waits (mean and max over the samples)."""
        with self._lock:
            inside = [sample for sample in self.samples if start <= sample.at <= end]
        if len(inside) < 2:
            return {"samples": len(inside)}
        first, last = inside[0], inside[-1]
        seconds = last.at - first.at
        cores = {name: (last.cpu[name] - first.cpu[name]) / seconds for name in self.parts}
        host = (last.host_busy - first.host_busy) / seconds
        summary: dict[str, Any] = {
            "samples": len(inside),
            "cpu_cores": {name: round(value, 3) for name, value in cores.items()},
            "host_cores_busy": round(host, 3),
            "others_cores": round(max(0.0, host - sum(cores.values())), 3),
        }
        for name in (*ACTIVITY_FIELDS, "not_granted"):
            values = [sample.not_granted if name == "not_granted" else sample.activity[name] for sample in inside]
            summary[name] = {"mean": round(sum(values) / len(values), 2), "max": max(values)}
        # A lock somebody waits for is held: the share of samples with a waiter is a
        # lower bound of how busy the most contended lock was.
        waited = sum(1 for sample in inside if sample.activity["lock_waits"] > 0)
        summary["lock_waited_share"] = round(waited / len(inside), 3)
        return summary

    def top_lock_waits(self, count: int = 5) -> list[dict[str, Any]]:
        with self._lock:
            common = self.lock_waiters.most_common(count)
        return [{"lock": event, "statement": query, "samples": seen} for (event, query), seen in common]

    def forget_lock_waits(self) -> None:
        with self._lock:
            self.lock_waiters.clear()


class PostgresStats:
    """Counters of the whole run from Postgres' own views (pg_stat_statements lives in
    the fleet's database: its own few statements count among the fleet's)."""

    def __init__(self, database_url: str):
        self.url = database_url
        self.database = urlsplit(database_url).path.lstrip("/")
        # The sampler's many reads go to the maintenance database, not counted.
        self.maintenance_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
        with psycopg.connect(database_url, autocommit=True) as connection:
            try:
                connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                connection.execute("SELECT 1 FROM pg_stat_statements LIMIT 1")
                self.statements = True
            except psycopg.Error:
                self.statements = False  # not in shared_preload_libraries

    def reset(self) -> dict[str, int]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            if self.statements:
                connection.execute("SELECT pg_stat_statements_reset()")
            return self._database(connection)

    def since(self, before: dict[str, int]) -> dict[str, Any]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            after = self._database(connection)
            top = connection.execute(_TOP_STATEMENTS, [self.database]).fetchall() if self.statements else []
            calls = connection.execute(_ALL_STATEMENTS, [self.database]).fetchone() if self.statements else None
        return {
            "database": {name: after[name] - before[name] for name in after},
            "statement_calls": int(calls[0]) if calls and calls[0] is not None else None,
            "statement_ms": round(float(calls[1]), 1) if calls and calls[1] is not None else None,
            "statements": [
                {"calls": count, "total_ms": round(total, 1), "mean_ms": round(mean, 3), "query": query}
                for count, total, mean, query in top
            ],
        }

    def _database(self, connection: psycopg.Connection) -> dict[str, int]:
        row = connection.execute(_DATABASE_COUNTERS, [self.database]).fetchone()
        assert row is not None
        return dict(zip(("commits", "rollbacks", "deadlocks", "rows_inserted", "rows_updated"), row, strict=True))


_DATABASE_COUNTERS = """
SELECT xact_commit, xact_rollback, deadlocks, tup_inserted, tup_updated
FROM pg_stat_database WHERE datname = %s
"""
_STATEMENTS_OF_DATABASE = "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s"
_TOP_STATEMENTS = f"""
SELECT s.calls, s.total_exec_time, s.mean_exec_time, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160)
{_STATEMENTS_OF_DATABASE} ORDER BY s.total_exec_time DESC LIMIT 10
"""
_ALL_STATEMENTS = f"SELECT sum(s.calls), sum(s.total_exec_time) {_STATEMENTS_OF_DATABASE}"
