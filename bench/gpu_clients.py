"""A system run, driven as its clients drive it: after a warm-up, jobs queued with one
batch POST, then followed by status pollers and Server-Sent Events streamers until each
is finished; what they saw, summed up, with the rate taken from the jobs' own timestamps."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gpu_cases import Case
from gpu_processes import StepFailed
from gpu_report import pipeline_calls, spread

TERMINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "TIMEOUT"})
# Django refuses request bodies over 2.5 MB (DATA_UPLOAD_MAX_MEMORY_SIZE).
MAX_SUBMIT_BODY = 2_000_000
MAX_BATCH_JOBS = 100  # BACKSERV_BATCH_MAX_TASKS
RUN_TIMEOUT_S = 900


def session_for(token: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def submit_batch(base_url: str, token: str, task_type: str, jobs: list[dict[str, Any]]) -> list[str]:
    """Queue the jobs with POST /api/v1/tasks/batch: one request, unless the body would
    pass Django's size limit or the batch limit."""
    session = session_for(token)
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for params in jobs:
        body = {"task_type": task_type, "params": params}
        length = len(json.dumps(body))
        if chunks[-1] and (size + length > MAX_SUBMIT_BODY or len(chunks[-1]) >= MAX_BATCH_JOBS):
            chunks.append([])
            size = 0
        chunks[-1].append(body)
        size += length
    ids = []
    for chunk in chunks:
        response = session.post(f"{base_url}/api/v1/tasks/batch", json={"tasks": chunk}, timeout=120)
        if response.status_code != 200:
            raise StepFailed(f"batch submit answered {response.status_code}: {response.text[:500]}")
        answer = response.json()
        rejected = [result for result in answer["results"] if result.get("status") != 202]
        if rejected:
            raise StepFailed(f"batch submit rejected {len(rejected)} job(s): {json.dumps(rejected[0])[:500]}")
        ids += [result["task"]["task_id"] for result in answer["results"]]
    return ids


@dataclass
class ClientTally:
    """What the clients saw; each thread keeps its own and they are added up at the end."""

    finals: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen_at: dict[str, float] = field(default_factory=dict)
    polls: int = 0
    poll_errors: int = 0
    poll_seconds: list[float] = field(default_factory=list)
    streams: int = 0
    stream_events: int = 0
    streams_unfinished: int = 0
    stream_errors: int = 0

    def add(self, other: ClientTally) -> None:
        self.finals.update(other.finals)
        self.seen_at.update(other.seen_at)
        self.poll_seconds += other.poll_seconds
        for name in ("polls", "poll_errors", "streams", "stream_events", "streams_unfinished", "stream_errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def poll(base_url: str, token: str, ids: list[str], interval: float, deadline: float, tally: ClientTally) -> None:
    """GET each job every `interval` seconds until it is finished."""
    import requests

    session = session_for(token)
    waiting = list(ids)
    next_at = time.monotonic()
    while waiting and time.monotonic() < deadline:
        for task_id in list(waiting):
            began = time.perf_counter()
            try:
                response = session.get(f"{base_url}/api/v1/tasks/{task_id}", timeout=30)
            except requests.RequestException:
                tally.poll_errors += 1
                continue
            tally.polls += 1
            tally.poll_seconds.append(time.perf_counter() - began)
            if response.status_code != 200:
                tally.poll_errors += 1
                continue
            job = response.json()
            if job["state"] in TERMINAL_STATES:
                tally.finals[task_id] = job
                tally.seen_at[task_id] = time.time()
                waiting.remove(task_id)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def stream(base_url: str, token: str, ids: list[str], deadline: float, tally: ClientTally) -> None:
    """Follow each job's Server-Sent Events, one job after another, to the end of its stream."""
    import requests

    session = session_for(token)
    for task_id in ids:
        if time.monotonic() > deadline:
            return
        finished = False
        try:
            with session.get(
                f"{base_url}/api/v1/tasks/{task_id}/events",
                headers={"Accept": "text/event-stream"},
                stream=True,
                timeout=(10, 120),
            ) as response:
                if response.status_code != 200:
                    tally.stream_errors += 1
                    continue
                tally.streams += 1
                for line in response.iter_lines(chunk_size=None):
                    if not line.startswith(b"data:"):
                        continue
                    tally.stream_events += 1
                    if json.loads(line[5:]).get("state") in TERMINAL_STATES:
                        finished = True
        except (requests.RequestException, ValueError):
            tally.stream_errors += 1
            continue
        if not finished:
            tally.streams_unfinished += 1


def measure_system(
    base_url: str,
    token: str,
    case: Case,
    *,
    batch: int,
    jobs: int,
    log: Path,
    pollers: int,
    streamers: int,
    interval: float,
) -> dict[str, Any]:
    """Warm-up (one job, then a batch of N), then the timed run with its clients; the
    worker's pipeline calls during it are read from its log, `log`."""
    warm = [case.params(10_000)]
    first = drive(base_url, token, case.task_type, warm, pollers=1, streamers=0, interval=0.05)
    check_jobs("warm-up", first)
    warmup = {"first_job_s": first.get("seconds")}
    if batch > 1:
        group = [case.params(10_001 + index) for index in range(batch)]
        warmed = drive(base_url, token, case.task_type, group, pollers=1, streamers=0, interval=0.05)
        check_jobs("warm-up batch", warmed)
        warmup["batch_s"] = warmed.get("seconds")
    offset = log.stat().st_size if log.exists() else 0
    params = [case.params(index) for index in range(jobs)]
    result = drive(base_url, token, case.task_type, params, pollers=pollers, streamers=streamers, interval=interval)
    # The log is flushed line by line (PYTHONUNBUFFERED); a moment for the last line.
    time.sleep(0.2)
    calls = result["pipeline_calls"] = pipeline_calls(log, offset)
    if calls is not None and result.get("seconds"):
        # How much of the run the worker spent inside pipeline calls: what is left is
        # the system's own time between calls, when the GPU had nothing to do.
        in_calls = sum(entry["total_s"] for entry in calls.values())
        result["pipeline_share"] = round(in_calls / result["seconds"], 3)
    result["first_job_s"] = warmup["first_job_s"]
    result["warmup"] = warmup
    return result


def check_jobs(name: str, result: dict[str, Any]) -> None:
    if not result.get("all_success"):
        raise StepFailed(f"{name}: jobs did not all succeed: {result.get('states')} {result.get('failures')}")


def drive(
    base_url: str,
    token: str,
    task_type: str,
    jobs: list[dict[str, Any]],
    *,
    pollers: int,
    streamers: int,
    interval: float,
) -> dict[str, Any]:
    """Queue the jobs at once and watch them as clients do, until all are finished;
    the jobs' own timestamps give the rate."""
    submitted = time.time()
    ids = submit_batch(base_url, token, task_type, jobs)
    submit_s = time.time() - submitted
    deadline = time.monotonic() + RUN_TIMEOUT_S
    pollers = max(1, min(pollers, len(ids)))
    streamers = max(0, min(streamers, len(ids)))
    tallies = [ClientTally() for _ in range(pollers + streamers)]
    threads = [
        threading.Thread(
            target=poll, args=(base_url, token, ids[index::pollers], interval, deadline, tallies[index]), daemon=True
        )
        for index in range(pollers)
    ]
    threads += [
        threading.Thread(
            target=stream,
            args=(base_url, token, ids[index::streamers], deadline, tallies[pollers + index]),
            daemon=True,
        )
        for index in range(streamers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic() + 30))
    tally = ClientTally()
    for each in tallies:
        tally.add(each)
    return summarize(ids, tally, submitted=submitted, submit_s=submit_s, pollers=pollers, streamers=streamers)


def summarize(
    ids: list[str], tally: ClientTally, *, submitted: float, submit_s: float, pollers: int, streamers: int
) -> dict[str, Any]:
    states: dict[str, int] = {}
    for task_id in ids:
        state = tally.finals.get(task_id, {}).get("state", "UNFINISHED")
        states[state] = states.get(state, 0) + 1
    failures = [
        {"task_id": task_id, "state": job["state"], "error": job.get("error")}
        for task_id, job in tally.finals.items()
        if job["state"] != "SUCCESS"
    ]
    failures += [{"task_id": task_id, "state": "UNFINISHED"} for task_id in ids if task_id not in tally.finals]
    summary: dict[str, Any] = {
        "jobs": len(ids),
        "states": states,
        "all_success": states.get("SUCCESS", 0) == len(ids),
        "failures": failures[:10],
        "submit_request_s": round(submit_s, 3),
        "clients": {
            "pollers": pollers,
            "streamers": streamers,
            "polls": tally.polls,
            "poll_errors": tally.poll_errors,
            "poll_ms": spread([seconds * 1000 for seconds in tally.poll_seconds], digits=1),
            "streams": tally.streams,
            "stream_events": tally.stream_events,
            "streams_unfinished": tally.streams_unfinished,
            "stream_errors": tally.stream_errors,
        },
    }
    done = [job for job in tally.finals.values() if job["state"] == "SUCCESS"]
    if not summary["all_success"] or not done:
        return summary
    first = min(moment(job["submitted_at"]) for job in done)
    last = max(moment(job["completed_at"]) for job in done)
    seconds = last - first
    summary.update(
        seconds=seconds,
        jobs_per_s=len(ids) / seconds if seconds > 0 else None,
        span=[first, last],
        client_seconds=round(max(tally.seen_at.values()) - submitted, 3),
        runs=run_breakdown(done),
    )
    return summary


def moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_breakdown(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's runs (a batch's jobs share one): how long each took, started to
    completed, and the gap between one's end and the next one's start, when the GPU
    had nothing of this run's to do."""
    runs = sorted({(moment(job["started_at"]), moment(job["completed_at"])) for job in jobs})
    lengths = [(end - start) * 1000 for start, end in runs]
    gaps = [(runs[index + 1][0] - runs[index][1]) * 1000 for index in range(len(runs) - 1)]
    return {"count": len(runs), "run_ms": spread(lengths, digits=1), "gap_ms": spread(gaps, digits=1)}
