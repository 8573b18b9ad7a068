"""`backserv task-types` and `backserv usage` (and Client.task_types / Client.usage)
against a live server. They skip themselves while the server has no such routes, and
turn on by themselves once it does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from backserv_client import Client

from tests.clients.conftest import SMALL_PARAMS, Cli, LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUTES = ("/api/v1/task-types", "/api/v1/usage")


@pytest.fixture
def discovery_server(backserv_server: LiveServer) -> LiveServer:
    if any(backserv_server.api("GET", route).status_code == 404 for route in ROUTES):
        pytest.skip("needs /api/v1/task-types and /api/v1/usage")
    return backserv_server


@pytest.fixture
def client(discovery_server: LiveServer) -> Iterator[Client]:
    with Client(discovery_server.url, discovery_server.token) as client:
        yield client


def test_task_types_lists_each_with_its_availability(cli: Cli, discovery_server: LiveServer) -> None:
    body = discovery_server.api("GET", "/api/v1/task-types").json()

    table = cli("task-types")
    as_json = cli("task-types", "--json")

    assert table.returncode == 0, table.stderr
    # The table's rows: name │ available │ description (a long description wraps onto
    # rows of its own, with an empty name).
    rows = {
        cells[1].strip(): cells[2].strip()
        for cells in (line.split("│") for line in table.stdout.splitlines() if line.count("│") >= 3)
        if cells[1].strip()
    }
    assert sorted(rows) == sorted(task_type["name"] for task_type in body["task_types"]), table.stdout
    for task_type in body["task_types"]:
        assert rows[task_type["name"]] == ("yes" if task_type["available"] else "no")
    assert json.loads(as_json.stdout) == body


def test_client_task_types_are_typed(client: Client) -> None:
    task_types = {task_type.name: task_type for task_type in client.task_types()}

    assert task_types["image_creation"].available is True
    assert isinstance(task_types["image_creation"].params_schema, dict)
    assert all(isinstance(task_type.available, bool) for task_type in task_types.values())


def test_usage_counts_your_finished_jobs(cli: Cli, client: Client, discovery_server: LiveServer) -> None:
    assert client.run("image_creation", prompt="counted", **SMALL_PARAMS).succeeded
    # The server counts days in UTC.
    today = datetime.now(UTC).date().isoformat()

    as_json = cli("usage", "--from", today, "--to", today, "--json")
    table = cli("usage", "--from", today, "--to", today)

    assert as_json.returncode == 0, as_json.stderr
    body = discovery_server.api("GET", "/api/v1/usage", params={"from": today, "to": today}).json()
    assert json.loads(as_json.stdout) == body
    assert body["jobs"] >= 1 and body["succeeded"] >= 1
    assert table.returncode == 0, table.stderr
    assert "GPU seconds" in table.stdout and "image_creation" in table.stdout
    usage = client.usage(date_from=date.fromisoformat(today), date_to=date.fromisoformat(today))
    assert (usage.jobs, usage.succeeded) == (body["jobs"], body["succeeded"])


def test_usage_of_a_period_without_jobs_is_zero(client: Client, cli: Cli) -> None:
    usage = client.usage(date_from="2000-01-01", date_to="2000-01-02")

    assert (usage.jobs, usage.succeeded, usage.failed) == (0, 0, 0)
    refused = cli("usage", "--from", "2000-13-45")
    assert refused.returncode == 3 and "from" in refused.stderr
