"""The staff servers API, the heartbeat with a server key, the load balancer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from servers.models import LoadBalancer, Server, ServerStatus
from servers.services import server_register
from tasks import services
from tasks.models import Task, TaskState

REMOTE = {
    "name": "gpu-server-01",
    "endpoints": {"predict": "http://gpu1.example/predict", "health": "http://gpu1.example/health"},
    "capabilities": ["image_creation"],
    "groups": ["production"],
    "priority": 2,
    "max_concurrent": 4,
}


def _key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def registered(db: None) -> tuple[Server, str]:
    issued = server_register(name="gpu-a", capabilities=["image_creation"], predict_url="http://a.example/p")
    return issued.server, issued.key


def test_staff_registers_a_server_and_sees_its_key_once(staff_client: APIClient) -> None:
    response = staff_client.post("/api/v1/servers", REMOTE, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["key"].startswith("bsk_") and body["server"]["status"] == "online"
    server = Server.objects.get(pk=body["server_id"])
    assert body["key"] not in str(server.__dict__)  # only its hash is kept
    shown = staff_client.get(f"/api/v1/servers/{server.pk}").json()
    assert "key" not in shown and shown["endpoints"]["predict"] == REMOTE["endpoints"]["predict"]
    assert (shown["priority"], shown["max_concurrent"], shown["groups"]) == (2, 4, ["production"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"capabilities": ["teleport"]}, "capabilities"),
        ({"capabilities": []}, "capabilities"),
        ({"endpoints": {}}, "endpoints.predict"),
        ({"endpoints": {"predict": "not a url"}}, "endpoints.predict"),
        ({"name": "bad name!"}, "name"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"priority": -1}, "priority"),
    ],
)
def test_it_refuses_bad_registrations_naming_the_field(
    staff_client: APIClient, change: dict[str, Any], field: str
) -> None:
    response = staff_client.post("/api/v1/servers", {**REMOTE, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_its_bodies_refuse_fields_they_do_not_know(staff_client: APIClient, registered: tuple[Server, str]) -> None:
    server, key = registered
    last_heartbeat_at = server.last_heartbeat_at
    for caller, url, body in (
        (staff_client, "/api/v1/servers", {**REMOTE, "region": "eu"}),
        (staff_client, f"/api/v1/servers/{server.pk}/maintenance", {"maintenance": True, "region": "eu"}),
        (_key_client(key), f"/api/v1/servers/{server.pk}/heartbeat", {"status": "online", "region": "eu"}),
        (staff_client, "/api/v1/stats/load-balancer/algorithm", {"algorithm": "least-connections", "region": "eu"}),
    ):
        response = caller.post(url, body, format="json")
        assert response.status_code == 400, (url, response.content)
        assert list(response.json()["fields"]) == ["region"], url
    server.refresh_from_db()
    assert not server.maintenance and server.last_heartbeat_at == last_heartbeat_at
    assert not Server.objects.filter(name=REMOTE["name"]).exists()
    assert not LoadBalancer.objects.filter(algorithm="least-connections").exists()


def test_it_refuses_a_second_server_with_the_same_name(staff_client: APIClient) -> None:
    assert staff_client.post("/api/v1/servers", REMOTE, format="json").status_code == 201
    response = staff_client.post("/api/v1/servers", REMOTE, format="json")
    assert response.status_code == 409 and response.json()["code"] == "server_exists"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/servers"),
        ("post", "/api/v1/servers"),
        ("get", "/api/v1/servers/{id}"),
        ("delete", "/api/v1/servers/{id}"),
        ("post", "/api/v1/servers/{id}/maintenance"),
        ("get", "/api/v1/servers/{id}/metrics"),
        ("get", "/api/v1/stats/load-balancer"),
        ("post", "/api/v1/stats/load-balancer/algorithm"),
    ],
)
def test_staff_endpoints_refuse_anonymous_users_and_server_keys(
    anonymous_client: APIClient, client: APIClient, registered: tuple[Server, str], method: str, path: str
) -> None:
    server, key = registered
    url = path.format(id=server.pk)
    assert getattr(anonymous_client, method)(url, {}, format="json").status_code == 401
    assert getattr(_key_client("bs_nottoken_x"), method)(url, {}, format="json").status_code == 401
    assert getattr(client, method)(url, {}, format="json").status_code == 403
    assert getattr(_key_client(key), method)(url, {}, format="json").status_code == 403
    assert Server.objects.filter(pk=server.pk).exists()


def test_the_list_filters_by_status_and_group_and_gives_times_in_ms(
    staff_client: APIClient, registered: tuple[Server, str]
) -> None:
    server, _ = registered
    server_register(name="gold", capabilities=["image_creation"], predict_url="http://g.example/p", groups=["gold"])
    long_ago = timezone.now() - timedelta(seconds=5)
    Server.objects.filter(pk=server.pk).update(
        registered_at=long_ago - timedelta(seconds=5), last_heartbeat_at=long_ago
    )
    listed = {item["name"]: item for item in staff_client.get("/api/v1/servers").json()["servers"]}
    assert set(listed) == {"gpu-a", "gold"}
    assert listed["gpu-a"]["uptime"] >= 10_000 and 5_000 <= listed["gpu-a"]["time_since_last_heartbeat"] < 60_000
    by_group = staff_client.get("/api/v1/servers?group=gold").json()["servers"]
    assert [item["name"] for item in by_group] == ["gold"]
    staff_client.post(f"/api/v1/servers/{server.pk}/maintenance", {"maintenance": True, "reason": "fan"}, format="json")
    in_maintenance = staff_client.get("/api/v1/servers?status=maintenance").json()["servers"]
    assert [(item["name"], item["maintenance_reason"]) for item in in_maintenance] == [("gpu-a", "fan")]
    assert [item["name"] for item in staff_client.get("/api/v1/servers?status=online").json()["servers"]] == ["gold"]
    response = staff_client.get("/api/v1/servers?status=sleeping")
    assert response.status_code == 400 and "status" in response.json()["fields"]


def test_unknown_or_malformed_server_ids_are_not_found(staff_client: APIClient) -> None:
    for server_id in ("nope", "00000000-0000-0000-0000-000000000000"):
        assert staff_client.get(f"/api/v1/servers/{server_id}").status_code == 404
        assert staff_client.delete(f"/api/v1/servers/{server_id}").status_code == 404


def test_maintenance_needs_the_flag_and_can_be_lifted(staff_client: APIClient, registered: tuple[Server, str]) -> None:
    server, _ = registered
    url = f"/api/v1/servers/{server.pk}/maintenance"
    response = staff_client.post(url, {"reason": "x"}, format="json")
    assert response.status_code == 400 and "maintenance" in response.json()["fields"]
    assert staff_client.post(url, {"maintenance": True, "reason": "x"}, format="json").json()["status"] == "maintenance"
    assert staff_client.post(url, {"maintenance": False}, format="json").json()["status"] == "online"


def test_unregistering_requeues_the_servers_jobs_and_removes_it(
    staff_client: APIClient, owner: User, registered: tuple[Server, str]
) -> None:
    server, _ = registered
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    assert task.server == server
    assert services.task_claim(task_id=task.pk, worker="remote:gpu-a", queue_name=server.queue_name)
    response = staff_client.delete(f"/api/v1/servers/{server.pk}")
    assert response.status_code == 200 and response.json()["server_id"] == str(server.pk)
    assert not Server.objects.filter(pk=server.pk).exists()
    task.refresh_from_db()
    assert task.state == TaskState.PENDING and task.server is None
    assert task.events.filter(type="requeued", data__reason="server unregistered").exists()


def test_metrics_count_the_servers_jobs(staff_client: APIClient, owner: User, registered: tuple[Server, str]) -> None:
    server, _ = registered
    for outcome in ("ok", "ok", "bad"):
        task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
        services.task_claim(task_id=task.pk, worker="w")
        task = Task.objects.get(pk=task.pk)
        services.task_start(task=task)
        if outcome == "ok":
            services.task_succeed(task=task, result={})
        else:
            services.task_fail(task=task, code="X", message="x")
    services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    body = staff_client.get(f"/api/v1/servers/{server.pk}/metrics").json()
    metrics = body["metrics"]
    assert body["server_id"] == str(server.pk)
    assert (metrics["tasks_processed"], metrics["success_count"], metrics["failure_count"]) == (3, 2, 1)
    assert metrics["average_processing_time"] >= 0 and metrics["current_load"] == 1.0  # 1 queued of 1 slot
    assert metrics["uptime"] >= 0


def test_a_server_heartbeats_with_its_key(registered: tuple[Server, str], client: APIClient) -> None:
    server, key = registered
    Server.objects.filter(pk=server.pk).update(status=ServerStatus.DEGRADED)
    body = {"status": "healthy", "active_tasks": 3, "metrics": {"cpu": 45, "memory": 60, "gpu": 80}}
    response = _key_client(key).post(f"/api/v1/servers/{server.pk}/heartbeat", body, format="json")
    assert response.status_code == 200 and response.json()["status"] == "online"
    server.refresh_from_db()
    assert server.metrics == body["metrics"] and server.reported_active_tasks == 3
    assert timezone.now() - server.last_heartbeat_at < timedelta(seconds=5)


def test_a_server_key_outlives_a_secret_key_rotation_through_the_fallbacks(db: None, settings: Any) -> None:
    old_key, new_key = "old-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz", "new-secret-key-0123456789-abcdefghij"
    settings.SECRET_KEY = old_key
    issued = server_register(name="gpu-a", capabilities=["image_creation"], predict_url="http://a.example/p")
    url = f"/api/v1/servers/{issued.server.pk}/heartbeat"
    settings.SECRET_KEY = new_key
    assert _key_client(issued.key).post(url, {}, format="json").status_code == 401

    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert _key_client(issued.key).post(url, {}, format="json").status_code == 200
    settings.SECRET_KEY_FALLBACKS = []  # re-hashed under the new key at that use
    assert _key_client(issued.key).post(url, {}, format="json").status_code == 200


def test_the_heartbeat_refuses_other_keys_and_bad_input(registered: tuple[Server, str], client: APIClient) -> None:
    server, key = registered
    other = server_register(name="gpu-b", capabilities=[], predict_url="http://b.example/p")
    url = f"/api/v1/servers/{server.pk}/heartbeat"
    assert APIClient().post(url, {}, format="json").status_code == 401
    assert client.post(url, {}, format="json").status_code == 401  # a user token is not a server key
    assert _key_client(key[:-2] + "xx").post(url, {}, format="json").status_code == 401
    assert _key_client(other.key).post(url, {}, format="json").status_code == 404
    response = _key_client(key).post(url, {"status": "sleepy"}, format="json")
    assert response.status_code == 400 and "status" in response.json()["fields"]
    response = _key_client(key).post(url, {"active_tasks": -1}, format="json")
    assert response.status_code == 400 and "active_tasks" in response.json()["fields"]


def test_a_server_key_cannot_read_users_jobs(registered: tuple[Server, str], owner: User) -> None:
    _, key = registered
    task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    # The list knows only user tokens; the detail knows server keys (for PUT) but a key
    # is no user.
    assert _key_client(key).get("/api/v1/tasks").status_code == 401
    assert _key_client(key).get(f"/api/v1/tasks/{task.pk}").status_code == 403
    assert _key_client(key).delete(f"/api/v1/tasks/{task.pk}").status_code == 403
    assert Task.objects.filter(pk=task.pk).exists()


def test_the_algorithm_is_set_at_runtime_and_kept_in_the_database(
    staff_client: APIClient, owner: User, make_server: Callable[..., Server]
) -> None:
    response = staff_client.post("/api/v1/stats/load-balancer/algorithm", {"algorithm": "teleport"}, format="json")
    assert response.status_code == 400 and "algorithm" in response.json()["fields"]
    body = {"algorithm": "least-connections"}
    response = staff_client.post("/api/v1/stats/load-balancer/algorithm", body, format="json")
    assert response.status_code == 200 and response.json()["algorithm"] == "least-connections"
    assert LoadBalancer.objects.get(pk=1).algorithm == "least-connections"
    busy = make_server("busy", max_concurrent=4, priority=3)
    make_server("idle", max_concurrent=2)
    for _ in range(2):
        services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
    Task.objects.update(server=busy, queue_name=busy.queue_name)
    status = staff_client.get("/api/v1/stats/load-balancer").json()
    assert status["algorithm"] == "least-connections"
    entry = status["server_distribution"][str(busy.pk)]
    assert (entry["load"], entry["queued_tasks"], entry["weight"]) == (0.5, 2, 3)
    assert status["average_load"] == 0.25 and status["total_active_tasks"] == 0
