"""One structured log line per state change, as key=value or JSON (LOG_FORMAT)."""

from __future__ import annotations

import json
import logging

import pytest

from accounts.models import User
from backserv_site.logs import JsonFormatter, KeyValueFormatter
from tasks import services
from tasks.models import Task


def _state_changes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", None)]


def test_each_state_change_logs_task_type_worker_and_duration(owner: User, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tasks.services")
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    services.task_claim(task_id=task.pk, worker="gpu-1:42")
    running = Task.objects.get(pk=task.pk)
    services.task_start(task=running)
    services.task_succeed(task=running, result={})
    records = _state_changes(caplog)
    assert [record.state for record in records] == ["RECEIVED", "STARTED", "SUCCESS"]
    assert all(record.task_id == str(task.pk) and record.task_type == "image_creation" for record in records)
    assert all(record.worker == "gpu-1:42" for record in records)
    assert records[1].queue_wait_s >= 0
    assert records[2].duration_s >= 0


def test_key_value_lines_quote_values_with_spaces() -> None:
    record = logging.makeLogRecord(
        {"name": "tasks.services", "levelname": "INFO", "msg": "changed", "task_id": "abc", "error": "out of memory"}
    )
    line = KeyValueFormatter().format(record)
    assert line.endswith('INFO tasks.services changed task_id=abc error="out of memory"')


def test_json_lines_carry_the_same_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "tasks.services", "levelname": "INFO", "msg": "task %s", "args": ("abc",), "duration_s": 1.5}
    )
    body = json.loads(JsonFormatter().format(record))
    assert body["message"] == "task abc"
    assert body["duration_s"] == 1.5
    assert body["level"] == "INFO"
