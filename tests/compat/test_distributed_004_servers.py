"""The distributed-system document (shared/seeds/004_*.txt), replayed: /api/servers
(admin role), /api/stats (tasks, hourly, per server, load balancer), and its
interactive docs (/docs) and OpenAPI description (/openapi.json)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from accounts.models import User
from servers.models import LoadBalancer, Server, ServerKind, ServerStatus
from servers.remote import remote_worker_name
from tasks import services
from tests.compat.test_distributed_004_tasks import REGISTER, UNKNOWN_ID

HEARTBEAT = {"status": "healthy", "activeTasks": 3, "metrics": {"cpu": 45, "memory": 60, "gpu": 80}}
MAINTENANCE = {"maintenance": True, "reason": "Scheduled maintenance"}
ALGORITHM = {"algorithm": "least-connections"}
JwtClient = Callable[..., APIClient]


@pytest.fixture
def admin(staff: User, jwt_client: JwtClient) -> APIClient:
    return jwt_client(staff, role="admin")


@pytest.fixture
def user(owner: User, jwt_client: JwtClient) -> APIClient:
    return jwt_client(owner)


@pytest.fixture
def registered(admin: APIClient) -> dict[str, Any]:
    response = admin.post("/api/servers", REGISTER, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == error and isinstance(body["details"], str) and body["details"], body
    return body


def _key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_register_replays_the_documented_example(admin: APIClient) -> None:
    response = admin.post("/api/servers", REGISTER, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["message"] == "Server registered successfully" and body["key"].startswith("bsk_")
    server = Server.objects.get(pk=uuid.UUID(body["serverId"]))
    assert server.name == "gpu-server-01" and server.kind == ServerKind.REMOTE
    assert server.predict_url == REGISTER["endpoints"]["predict"] and server.api_key == "server-api-key"
    assert server.capabilities == ["image", "video"] and server.groups == ["production"]
    assert server.max_concurrent == 10 and server.priority == 1


def test_register_takes_backserv_task_types_in_either_spelling(admin: APIClient) -> None:
    response = admin.post("/api/servers", {**REGISTER, "capabilities": ["image-creation", "video"]}, format="json")
    assert response.status_code == 201, response.content
    assert Server.objects.get().capabilities == ["image_creation", "video"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"endpoints": {"health": "https://x.example/health"}}, "endpoints.predict"),
        ({"endpoints": {"predict": "not a url"}}, "endpoints.predict"),
        ({"capabilities": []}, "capabilities"),
        ({"capabilities": ["Video Processing!"]}, "capabilities"),
        ({"maxConcurrent": 0}, "maxConcurrent"),
        ({"priority": 0}, "priority"),
    ],
)
def test_register_refuses_bad_input_naming_the_field(admin: APIClient, changes: dict[str, Any], field: str) -> None:
    body = _error(admin.post("/api/servers", {**REGISTER, **changes}, format="json"), 400, "Invalid request")
    assert field in body["fields"], body


def test_register_without_a_name_replays_the_missing_field_example(admin: APIClient) -> None:
    body = {key: value for key, value in REGISTER.items() if key != "name"}
    error = _error(admin.post("/api/servers", body, format="json"), 400, "Invalid request")
    assert error["details"] == "Missing required field: name"


def test_a_second_server_of_the_same_name_is_a_400(admin: APIClient, registered: dict[str, Any]) -> None:
    _error(admin.post("/api/servers", REGISTER, format="json"), 400, "Invalid request")


def test_list_answers_the_documented_fields(admin: APIClient, registered: dict[str, Any]) -> None:
    Server.objects.filter(pk=registered["serverId"]).update(groups=["production", "gpu"], priority=2)
    now_ms = int(time.time() * 1000)
    response = admin.get("/api/servers")
    assert response.status_code == 200
    [server] = response.json()["servers"]
    assert server["id"] == registered["serverId"] and server["name"] == "gpu-server-01"
    assert server["status"] == "online" and server["groups"] == ["production", "gpu"] and server["priority"] == 2
    for field in ("registeredAt", "lastHeartbeat"):
        assert isinstance(server[field], int) and abs(server[field] - now_ms) < 60_000
    for field in ("uptime", "timeSinceLastHeartbeat"):
        assert isinstance(server[field], int) and 0 <= server[field] < 60_000


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?status=online", ["gpu-server-01"]),
        ("?status=maintenance", ["gpu-server-02"]),
        ("?status=offline", []),
        ("?status=degraded", []),
        ("?group=production", ["gpu-server-01"]),
        ("?group=staging", ["gpu-server-02"]),
        ("?status=online&group=staging", []),
    ],
)
def test_list_filters_by_status_and_group(
    admin: APIClient, registered: dict[str, Any], query: str, expected: list[str]
) -> None:
    second = admin.post("/api/servers", {**REGISTER, "name": "gpu-server-02", "groups": ["staging"]}, format="json")
    admin.post(f"/api/servers/{second.json()['serverId']}/maintenance", MAINTENANCE, format="json")
    names = [server["name"] for server in admin.get(f"/api/servers{query}").json()["servers"]]
    assert names == expected


def test_list_refuses_an_unknown_status(admin: APIClient) -> None:
    assert "status" in _error(admin.get("/api/servers?status=sleepy"), 400, "Invalid request")["fields"]


def test_heartbeat_replays_the_documented_body(admin: APIClient, registered: dict[str, Any]) -> None:
    server_id = registered["serverId"]
    for caller in (admin, _key_client(registered["key"])):
        response = caller.post(f"/api/servers/{server_id}/heartbeat", HEARTBEAT, format="json")
        assert response.status_code == 200, response.content
        assert response.json() == {"message": "Heartbeat received", "serverId": server_id, "status": "online"}
    server = Server.objects.get(pk=server_id)
    assert server.reported_active_tasks == 3 and server.metrics == HEARTBEAT["metrics"]
    degraded = admin.post(f"/api/servers/{server_id}/heartbeat", {**HEARTBEAT, "status": "degraded"}, format="json")
    assert degraded.json()["status"] == "degraded"
    body = _error(
        admin.post(f"/api/servers/{server_id}/heartbeat", {"status": "asleep"}, format="json"), 400, "Invalid request"
    )
    assert "status" in body["fields"]


def test_a_server_key_heartbeats_only_for_its_own_server(admin: APIClient, registered: dict[str, Any]) -> None:
    other = admin.post("/api/servers", {**REGISTER, "name": "gpu-server-02"}, format="json").json()
    response = _key_client(registered["key"]).post(
        f"/api/servers/{other['serverId']}/heartbeat", HEARTBEAT, format="json"
    )
    _error(response, 404, "Not found")


def test_unregister_replays_the_documented_answer(admin: APIClient, registered: dict[str, Any]) -> None:
    server_id = registered["serverId"]
    response = admin.delete(f"/api/servers/{server_id}")
    assert response.status_code == 200
    assert response.json() == {"message": "Server unregistered", "serverId": server_id}
    assert not Server.objects.filter(pk=server_id).exists()
    _error(admin.delete(f"/api/servers/{server_id}"), 404, "Not found")


def test_maintenance_replays_the_documented_body(admin: APIClient, registered: dict[str, Any]) -> None:
    server_id = registered["serverId"]
    response = admin.post(f"/api/servers/{server_id}/maintenance", MAINTENANCE, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "message": "Maintenance mode enabled",
        "serverId": server_id,
        "maintenance": True,
        "reason": "Scheduled maintenance",
        "status": "maintenance",
    }
    off = admin.post(f"/api/servers/{server_id}/maintenance", {"maintenance": False}, format="json").json()
    assert off["message"] == "Maintenance mode disabled" and off["status"] == "online"
    body = _error(admin.post(f"/api/servers/{server_id}/maintenance", {}, format="json"), 400, "Invalid request")
    assert body["details"] == "Missing required field: maintenance"


def test_metrics_answer_the_documented_fields(admin: APIClient, registered: dict[str, Any], owner: User) -> None:
    server = Server.objects.get(pk=registered["serverId"])
    task = services.task_submit(owner=owner, task_type="video-processing", params={}, capabilities=["video"])
    assert services.task_claim(task_id=task.pk, worker=remote_worker_name(server), queue_name=server.queue_name)
    response = admin.get(f"/api/servers/{server.pk}/metrics")
    assert response.status_code == 200
    body = response.json()
    assert body["serverId"] == str(server.pk)
    metrics = body["metrics"]
    assert isinstance(metrics["uptime"], int) and metrics["uptime"] >= 0
    assert (metrics["tasksProcessed"], metrics["successCount"], metrics["failureCount"]) == (0, 0, 0)
    assert metrics["averageProcessingTime"] is None and metrics["currentLoad"] == 0.1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/servers", REGISTER),
        ("get", "/api/servers", None),
        ("delete", f"/api/servers/{UNKNOWN_ID}", None),
        ("post", f"/api/servers/{UNKNOWN_ID}/heartbeat", HEARTBEAT),
        ("post", f"/api/servers/{UNKNOWN_ID}/maintenance", MAINTENANCE),
        ("get", f"/api/servers/{UNKNOWN_ID}/metrics", None),
        ("get", "/api/stats/tasks", None),
        ("get", "/api/stats/hourly", None),
        ("get", f"/api/stats/servers/{UNKNOWN_ID}", None),
        ("get", "/api/stats/load-balancer", None),
        ("post", "/api/stats/load-balancer/algorithm", ALGORITHM),
    ],
)
def test_admin_routes_replay_the_403_and_401_examples(
    user: APIClient, client: APIClient, anonymous_client: APIClient, method: str, path: str, body: Any
) -> None:
    for caller in (user, client):
        response = getattr(caller, method)(path, body, format="json")
        assert response.status_code == 403
        assert response.json() == {"error": "Forbidden", "details": "Admin role required"}
    _error(getattr(anonymous_client, method)(path, body, format="json"), 401, "Unauthorized")
    assert not Server.objects.exists()


def test_our_staff_tokens_with_the_admin_scope_work_too(staff_client: APIClient) -> None:
    assert staff_client.post("/api/servers", REGISTER, format="json").status_code == 201


@pytest.mark.parametrize("path", ["/metrics", "/maintenance", "", "/heartbeat"])
def test_an_unknown_server_is_the_documented_404(admin: APIClient, path: str) -> None:
    method = admin.get if path == "/metrics" else admin.delete if path == "" else admin.post
    response = method(
        f"/api/servers/{UNKNOWN_ID}{path}", HEARTBEAT if path == "/heartbeat" else MAINTENANCE, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {"error": "Not found", "details": f"Server not found: {UNKNOWN_ID}"}


# Statistics --------------------------------------------------------------------------------


def _finished_jobs(owner: User, server: Server) -> None:
    """Three jobs the server finished today (two successes, one failure), one waiting."""
    for outcome in ("COMPLETED", "COMPLETED", "FAILED"):
        task = services.task_submit(owner=owner, task_type="video-processing", params={}, capabilities=["video"])
        services.task_claim(task_id=task.pk, worker=remote_worker_name(server), queue_name=server.queue_name)
        task.refresh_from_db()
        services.task_start(task=task)
        task.refresh_from_db()
        if outcome == "COMPLETED":
            services.task_succeed(task=task, result={})
        else:
            services.task_fail(task=task, code="DECODER", message="broken stream")
    services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "a fox"})


def test_task_stats_answer_the_documented_fields(admin: APIClient, registered: dict[str, Any], owner: User) -> None:
    _finished_jobs(owner, Server.objects.get(pk=registered["serverId"]))
    response = admin.get(f"/api/stats/tasks?date={timezone.localdate().isoformat()}")
    assert response.status_code == 200
    body = response.json()
    assert body["totalTasks"] == 4 and body["pendingTasks"] == 1
    assert body["successfulTasks"] == 2 and body["failedTasks"] == 1 and body["retriedTasks"] == 0
    assert isinstance(body["averageProcessingTime"], int) and body["serverCount"] == 1
    assert body["topServers"] == [
        {"serverId": registered["serverId"], "name": "gpu-server-01", "tasksProcessed": 3, "successRate": 0.6667}
    ]
    assert len(body["hourlyTrend"]) == 24 and set(body["hourlyTrend"][0]) == {"hour", "tasks"}
    assert sum(hour["tasks"] for hour in body["hourlyTrend"]) == 4
    assert admin.get("/api/stats/tasks").json()["totalTasks"] == 4  # no date: today


def test_hourly_stats_answer_the_documented_fields(admin: APIClient, registered: dict[str, Any], owner: User) -> None:
    _finished_jobs(owner, Server.objects.get(pk=registered["serverId"]))
    today = timezone.localdate().isoformat()
    body = admin.get(f"/api/stats/hourly?date={today}").json()
    assert body["date"] == today and [hour["hour"] for hour in body["hours"]] == list(range(24))
    assert set(body["hours"][0]) == {"hour", "created", "completed", "failed", "averageTime"}
    now = body["hours"][timezone.localtime().hour]
    assert (now["created"], now["completed"], now["failed"]) == (4, 2, 1) and isinstance(now["averageTime"], int)


def test_server_stats_answer_the_documented_fields(admin: APIClient, registered: dict[str, Any], owner: User) -> None:
    _finished_jobs(owner, Server.objects.get(pk=registered["serverId"]))
    body = admin.get(f"/api/stats/servers/{registered['serverId']}?date={timezone.localdate().isoformat()}").json()
    assert body["serverId"] == registered["serverId"]
    assert (body["tasksProcessed"], body["successCount"], body["failureCount"]) == (3, 2, 1)
    assert body["successRate"] == 0.6667 and isinstance(body["averageProcessingTime"], int)
    assert body["uptime"] == 1.0
    quiet = admin.get(f"/api/stats/servers/{registered['serverId']}?date=2024-01-06").json()
    assert quiet["tasksProcessed"] == 0 and quiet["uptime"] is None


@pytest.mark.parametrize("path", ["/api/stats/tasks", "/api/stats/hourly", f"/api/stats/servers/{UNKNOWN_ID}"])
def test_stats_refuse_a_bad_date_naming_it(admin: APIClient, path: str) -> None:
    assert "date" in _error(admin.get(f"{path}?date=06/01/2024"), 400, "Invalid request")["fields"]


def test_the_documents_clients_may_send_what_back_serv_s_own_api_refuses(admin: APIClient) -> None:
    # Fields the document does not name, at the top and in the endpoints this route
    # shares with /api/v1/servers, and an empty date: read as the document's clients
    # have always been read, though /api/v1 refuses each.
    endpoints = {**REGISTER["endpoints"], "websocket": "wss://server1.example.com/ws"}
    response = admin.post("/api/servers", {**REGISTER, "endpoints": endpoints, "region": "eu"}, format="json")
    assert response.status_code == 201, response.content
    server_id = response.json()["serverId"]
    heartbeat = admin.post(f"/api/servers/{server_id}/heartbeat", {**HEARTBEAT, "uptime": 7}, format="json")
    assert heartbeat.status_code == 200, heartbeat.content
    assert admin.get("/api/stats/tasks?date=").status_code == 200


def test_stats_of_an_unknown_server_are_the_documented_404(admin: APIClient) -> None:
    response = admin.get(f"/api/stats/servers/{UNKNOWN_ID}?date={date.today().isoformat()}")
    assert response.json() == {"error": "Not found", "details": f"Server not found: {UNKNOWN_ID}"}


def test_load_balancer_answers_the_documented_fields(admin: APIClient, registered: dict[str, Any], owner: User) -> None:
    server = Server.objects.get(pk=registered["serverId"])
    Server.objects.filter(pk=server.pk).update(priority=2)
    for _ in range(6):
        task = services.task_submit(owner=owner, task_type="video-processing", params={}, capabilities=["video"])
        services.task_claim(task_id=task.pk, worker=remote_worker_name(server), queue_name=server.queue_name)
    body = admin.get("/api/stats/load-balancer").json()
    assert body["algorithm"] == "round-robin"
    entry = body["serverDistribution"][str(server.pk)]
    assert (entry["load"], entry["activeTasks"], entry["weight"]) == (0.6, 6, 2)
    assert body["totalActiveTasks"] == 6 and body["averageLoad"] == 0.6


def test_set_algorithm_replays_the_documented_example(admin: APIClient) -> None:
    response = admin.post("/api/stats/load-balancer/algorithm", ALGORITHM, format="json")
    assert response.status_code == 200
    assert response.json() == {"message": "Load balancer algorithm updated", "algorithm": "least-connections"}
    assert LoadBalancer.objects.get().algorithm == "least-connections"
    for algorithm in ("round-robin", "weighted-round-robin", "random"):
        assert (
            admin.post("/api/stats/load-balancer/algorithm", {"algorithm": algorithm}, format="json").json()[
                "algorithm"
            ]
            == algorithm
        )
    body = _error(
        admin.post("/api/stats/load-balancer/algorithm", {"algorithm": "fastest"}, format="json"),
        400,
        "Invalid request",
    )
    assert "algorithm" in body["fields"]


def test_a_server_gone_offline_leaves_the_distribution(admin: APIClient, registered: dict[str, Any]) -> None:
    Server.objects.filter(pk=registered["serverId"]).update(status=ServerStatus.OFFLINE)
    assert admin.get("/api/stats/load-balancer").json()["serverDistribution"] == {}


# Docs --------------------------------------------------------------------------------------


def test_openapi_json_describes_every_route_of_the_document(anonymous_client: APIClient) -> None:
    GENERATOR_STATS.reset()
    response = anonymous_client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert not GENERATOR_STATS, "generating the description warned"
    assert schema["openapi"].startswith("3.") and "distributed" in schema["info"]["title"]
    assert set(schema["paths"]) == {
        "/api/task",
        "/api/task/{task_id}",
        "/api/task/{task_id}/retry",
        "/api/task/{task_id}/cancel",
        "/api/servers",
        "/api/servers/{server_id}",
        "/api/servers/{server_id}/heartbeat",
        "/api/servers/{server_id}/maintenance",
        "/api/servers/{server_id}/metrics",
        "/api/stats/tasks",
        "/api/stats/hourly",
        "/api/stats/servers/{server_id}",
        "/api/stats/load-balancer",
        "/api/stats/load-balancer/algorithm",
    }
    assert schema["components"]["securitySchemes"]["jwt"]["bearerFormat"] == "JWT"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, f"{method} {path} documents no 401"
            assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
            success = [response for code, response in responses.items() if code.startswith("2")]
            assert any("examples" in body for response in success for body in response["content"].values())
    create = schema["paths"]["/api/task"]["post"]["requestBody"]["content"]["application/json"]
    assert "video-processing" in str(create["examples"])


def test_docs_serve_swagger_ui_with_local_assets_and_both_descriptions(anonymous_client: APIClient) -> None:
    response = anonymous_client.get("/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar" in html and "cdn" not in html.lower()
    assert '"url": "/openapi.json"' in html and '"url": "/api/schema/"' in html
    assert anonymous_client.get("/redoc").status_code == 200


def test_the_documents_routes_stay_out_of_backserv_schema(anonymous_client: APIClient) -> None:
    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert not [path for path in schema["paths"] if not path.startswith("/api/v1/")]
