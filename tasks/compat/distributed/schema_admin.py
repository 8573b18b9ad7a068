"""The OpenAPI description of the distributed-system document's admin routes
(shared/seeds/004): servers, statistics and the load balancer (see schema)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from servers.models import Algorithm
from tasks.compat.distributed.schema import SERVER_ID, answer, errors, sent

OTHER_SERVER_ID = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"

# Servers -------------------------------------------------------------------------------


class ServerRegisteredSerializer(serializers.Serializer):
    serverId = serializers.UUIDField()
    message = serializers.CharField()
    key = serializers.CharField(help_text="The server's key `bsk_…` for heartbeats and task updates; shown once.")

    class Meta:
        ref_name = "ServerRegistered"


class ServerItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["online", "offline", "maintenance", "degraded"])
    registeredAt = serializers.IntegerField(help_text="Epoch milliseconds.")
    lastHeartbeat = serializers.IntegerField(allow_null=True, help_text="Epoch milliseconds.")
    uptime = serializers.IntegerField(help_text="Milliseconds since registration.")
    timeSinceLastHeartbeat = serializers.IntegerField(allow_null=True, help_text="Milliseconds.")
    groups = serializers.ListField(child=serializers.CharField())
    priority = serializers.IntegerField(help_text="Weight (weighted round-robin).")
    kind = serializers.CharField()
    endpoints = serializers.DictField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
    maxConcurrent = serializers.IntegerField()
    activeTasks = serializers.IntegerField(help_text="As its last heartbeat said.")
    maintenanceReason = serializers.CharField()

    class Meta:
        ref_name = "Server"


class ServerListSerializer(serializers.Serializer):
    servers = ServerItemSerializer(many=True)

    class Meta:
        ref_name = "ServerList"


class ServerMessageSerializer(serializers.Serializer):
    message = serializers.CharField()
    serverId = serializers.UUIDField()
    status = serializers.CharField(required=False)
    maintenance = serializers.BooleanField(required=False)
    reason = serializers.CharField(required=False)

    class Meta:
        ref_name = "ServerMessage"


class MetricValuesSerializer(serializers.Serializer):
    uptime = serializers.IntegerField(help_text="Milliseconds since registration.")
    tasksProcessed = serializers.IntegerField()
    successCount = serializers.IntegerField()
    failureCount = serializers.IntegerField()
    averageProcessingTime = serializers.IntegerField(allow_null=True, help_text="Milliseconds.")
    currentLoad = serializers.FloatField(help_text="Unfinished jobs / maxConcurrent.")
    activeTasks = serializers.IntegerField()
    queuedTasks = serializers.IntegerField()
    reported = serializers.DictField(help_text="The metrics of its last heartbeat.")

    class Meta:
        ref_name = "ServerMetricValues"


class ServerMetricsSerializer(serializers.Serializer):
    serverId = serializers.UUIDField()
    metrics = MetricValuesSerializer()

    class Meta:
        ref_name = "ServerMetrics"


SERVER = {
    "id": SERVER_ID,
    "name": "gpu-server-01",
    "status": "online",
    "registeredAt": 1704553200000,
    "lastHeartbeat": 1704556800000,
    "uptime": 3600000,
    "timeSinceLastHeartbeat": 5000,
    "groups": ["production", "gpu"],
    "priority": 2,
    "kind": "remote",
    "endpoints": {
        "predict": "https://server1.example.com/predict",
        "health": "https://server1.example.com/health",
        "metrics": "https://server1.example.com/metrics",
    },
    "capabilities": ["image", "video"],
    "maxConcurrent": 10,
    "activeTasks": 3,
    "maintenanceReason": "",
}
REGISTER_SERVER: dict[str, Any] = {
    "summary": "Register a server (admin)",
    "description": "A remote HTTP server jobs are POSTed to (`endpoints.predict`, with `apiKey` as a bearer "
    "token). `capabilities`: Back.Serv task types it runs and any other job types (e.g. `video`).",
    "examples": sent(
        "the document's server",
        {
            "name": "gpu-server-01",
            "endpoints": SERVER["endpoints"],
            "apiKey": "server-api-key",
            "maxConcurrent": 10,
            "capabilities": ["video", "image"],
            "groups": ["production"],
            "priority": 1,
        },
    ),
    "responses": {
        201: answer(
            ServerRegisteredSerializer,
            "registered",
            {
                "serverId": SERVER_ID,
                "message": "Server registered successfully",
                "key": "bsk_3f9a0c2e_Zp4T8vN2cR7yL1mQ6wE0sJ5hB9fK3gDxY2aW7uI4o",
            },
        ),
        **errors(400, 401, 403, 429),
    },
}
LIST_SERVERS: dict[str, Any] = {
    "summary": "List servers (admin)",
    "parameters": [
        OpenApiParameter("status", str, enum=["online", "offline", "maintenance", "degraded"], required=False),
        OpenApiParameter("group", str, required=False),
    ],
    "responses": {200: answer(ServerListSerializer, "one server", {"servers": [SERVER]}), **errors(400, 401, 403)},
}
HEARTBEAT: dict[str, Any] = {
    "summary": "Server heartbeat (the server's key, or admin)",
    "description": "`status`: healthy, online or ok (online); degraded or unhealthy (degraded).",
    "examples": sent("healthy", {"status": "healthy", "activeTasks": 3, "metrics": {"cpu": 45, "memory": 60}}),
    "responses": {
        200: answer(
            ServerMessageSerializer,
            "received",
            {"message": "Heartbeat received", "serverId": SERVER_ID, "status": "online"},
        ),
        **errors(400, 401, 403, 404),
    },
}
UNREGISTER_SERVER: dict[str, Any] = {
    "summary": "Unregister a server (admin)",
    "description": "Its unfinished jobs go back to the queue for other servers.",
    "responses": {
        200: answer(ServerMessageSerializer, "unregistered", {"message": "Server unregistered", "serverId": SERVER_ID}),
        **errors(401, 403, 404),
    },
}
MAINTENANCE: dict[str, Any] = {
    "summary": "Set maintenance mode (admin)",
    "description": "In maintenance a server gets no new jobs and finishes the ones it runs.",
    "examples": sent("on", {"maintenance": True, "reason": "Scheduled maintenance"}),
    "responses": {
        200: answer(
            ServerMessageSerializer,
            "on",
            {
                "message": "Maintenance mode enabled",
                "serverId": SERVER_ID,
                "maintenance": True,
                "reason": "Scheduled maintenance",
                "status": "maintenance",
            },
        ),
        **errors(400, 401, 403, 404),
    },
}
SERVER_METRICS: dict[str, Any] = {
    "summary": "A server's metrics (admin)",
    "responses": {
        200: answer(
            ServerMetricsSerializer,
            "a busy server",
            {
                "serverId": SERVER_ID,
                "metrics": {
                    "uptime": 3600000,
                    "tasksProcessed": 150,
                    "successCount": 147,
                    "failureCount": 3,
                    "averageProcessingTime": 45000,
                    "currentLoad": 0.6,
                    "activeTasks": 6,
                    "queuedTasks": 0,
                    "reported": {"cpu": 45, "memory": 60, "gpu": 80},
                },
            },
        ),
        **errors(401, 403, 404),
    },
}

# Statistics and the load balancer --------------------------------------------------------

DATE = OpenApiParameter("date", OpenApiTypes.DATE, required=False, description="YYYY-MM-DD (UTC); today if absent.")
TASK_STATS: dict[str, Any] = {
    "summary": "Task statistics of a day (admin)",
    "parameters": [DATE],
    "responses": {
        200: answer(
            OpenApiTypes.OBJECT,
            "a day",
            {
                "date": "2024-01-06",
                "totalTasks": 500,
                "pendingTasks": 10,
                "runningTasks": 0,
                "successfulTasks": 450,
                "failedTasks": 30,
                "cancelledTasks": 10,
                "retriedTasks": 10,
                "averageProcessingTime": 45000,
                "serverCount": 5,
                "topServers": [
                    {"serverId": SERVER_ID, "name": "gpu-server-01", "tasksProcessed": 150, "successRate": 0.98}
                ],
                "hourlyTrend": [{"hour": 0, "tasks": 20}, {"hour": 1, "tasks": 15}],
            },
            "Jobs submitted that day by outcome; servers by the jobs they finished that day.",
        ),
        **errors(400, 401, 403),
    },
}
HOURLY_STATS: dict[str, Any] = {
    "summary": "Tasks per hour of a day (admin)",
    "parameters": [DATE],
    "responses": {
        200: answer(
            OpenApiTypes.OBJECT,
            "a day",
            {
                "date": "2024-01-06",
                "hours": [{"hour": 0, "created": 20, "completed": 18, "failed": 2, "averageTime": 42000}],
            },
            "24 hours; averageTime in milliseconds, null without a completed job.",
        ),
        **errors(400, 401, 403),
    },
}
SERVER_STATS: dict[str, Any] = {
    "summary": "A server's statistics of a day (admin)",
    "parameters": [DATE],
    "responses": {
        200: answer(
            OpenApiTypes.OBJECT,
            "a day",
            {
                "serverId": SERVER_ID,
                "name": "gpu-server-01",
                "date": "2024-01-06",
                "tasksProcessed": 150,
                "successCount": 147,
                "failureCount": 3,
                "successRate": 0.98,
                "averageProcessingTime": 45000,
                "uptime": 0.995,
            },
            "uptime: the fraction of the day so far (from registration) the server was online.",
        ),
        **errors(400, 401, 403, 404),
    },
}
LOAD_BALANCER: dict[str, Any] = {
    "summary": "Load distribution and algorithm (admin)",
    "responses": {
        200: answer(
            OpenApiTypes.OBJECT,
            "two servers",
            {
                "algorithm": "weighted-round-robin",
                "serverDistribution": {
                    SERVER_ID: {"load": 0.6, "activeTasks": 6, "weight": 2, "queuedTasks": 0, "name": "gpu-server-01"},
                    OTHER_SERVER_ID: {
                        "load": 0.3,
                        "activeTasks": 3,
                        "weight": 1,
                        "queuedTasks": 0,
                        "name": "gpu-server-02",
                    },
                },
                "totalActiveTasks": 9,
                "averageLoad": 0.45,
                "waitingForServer": 0,
            },
        ),
        **errors(401, 403),
    },
}


class AlgorithmUpdatedSerializer(serializers.Serializer):
    message = serializers.CharField()
    algorithm = serializers.ChoiceField(choices=Algorithm.choices)

    class Meta:
        ref_name = "AlgorithmUpdated"


SET_ALGORITHM: dict[str, Any] = {
    "summary": "Set the load balancing algorithm (admin)",
    "description": "round-robin, least-connections, weighted-round-robin (by server priority) or random.",
    "examples": sent("least connections", {"algorithm": "least-connections"}),
    "responses": {
        200: answer(
            AlgorithmUpdatedSerializer,
            "updated",
            {"message": "Load balancer algorithm updated", "algorithm": "least-connections"},
        ),
        **errors(400, 401, 403),
    },
}
