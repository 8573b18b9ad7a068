"""Job metrics for Prometheus. Counters and histograms are written by the process where
the event happens (API process: submits; worker: outcomes, durations, model loads); in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR) each process writes its own file and a
scrape of any process sums them. The queue gauge is read from the database at scrape
time, so it is right whichever process answers."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Generation jobs run from a second to many minutes; model loads from 0.1 s (tiny
# models) to minutes (a large checkpoint off a slow disk).
_JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))

tasks_submitted = Counter("tasks_submitted_total", "Jobs accepted by the API.", ["task_type"])
tasks_completed = Counter(
    "tasks_completed_total", "Jobs that reached a final state, by that state.", ["task_type", "status"]
)
tasks_retried = Counter("tasks_retried_total", "Automatic retries scheduled after a retryable failure.", ["task_type"])
task_duration = Histogram(
    "task_duration_seconds", "Run time of finished jobs (start to end).", ["task_type"], buckets=_JOB_BUCKETS
)
task_queue_wait = Histogram(
    "task_queue_wait_seconds", "Time from (re)queueing to the start of a run.", ["task_type"], buckets=_JOB_BUCKETS
)
model_loads = Counter("model_loads_total", "Pipelines loaded into a worker's cache.", ["task_type"])
model_load_seconds = Histogram(
    "model_load_seconds", "Time to load a pipeline into a worker's cache.", ["task_type"], buckets=_JOB_BUCKETS
)


class QueueCollector(Collector):
    """tasks_queued{task_type}: PENDING jobs now, one GROUP BY at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from tasks.selectors import tasks_queued_by_type

        gauge = GaugeMetricFamily("tasks_queued", "Jobs waiting to start, by task type.", labels=["task_type"])
        for task_type, count in tasks_queued_by_type().items():
            gauge.add_metric([task_type], count)
        yield gauge
