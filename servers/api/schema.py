"""OpenAPI pieces of the servers API: the server key scheme, the shapes the views build
as plain dicts (documentation only), and examples."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers

from servers.api.serializers import ServerSerializer
from servers.authentication import IsServer
from servers.models import Algorithm


class ServerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "servers.authentication.ServerKeyAuthentication"
    name = "serverKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer bsk_…` (a server key, shown once when the GPU server is "
            "registered). It speaks for that server only and is never a user.",
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[Any]] | None:
        # Staff and user endpoints recognise a server key only to refuse it (403): listing
        # it as their security would tell clients it works there.
        if any(isinstance(permission, IsServer) for permission in auto_schema.view.get_permissions()):
            return {self.name: []}
        return None


class ServerListSerializer(serializers.Serializer):
    servers = ServerSerializer(many=True)

    class Meta:
        ref_name = "ServerList"


class ServerRegisteredSerializer(serializers.Serializer):
    server_id = serializers.UUIDField()
    key = serializers.CharField(help_text="The server key `bsk_…`: shown only in this answer.")
    message = serializers.CharField()
    server = ServerSerializer()

    class Meta:
        ref_name = "ServerRegistered"


class ServerUnregisteredSerializer(serializers.Serializer):
    message = serializers.CharField()
    server_id = serializers.UUIDField()

    class Meta:
        ref_name = "ServerUnregistered"


class ServerMetricsValuesSerializer(serializers.Serializer):
    uptime = serializers.IntegerField(allow_null=True, help_text="Milliseconds since registration.")
    tasks_processed = serializers.IntegerField()
    success_count = serializers.IntegerField()
    failure_count = serializers.IntegerField()
    average_processing_time = serializers.IntegerField(
        allow_null=True, help_text="Milliseconds per successful job; null before the first one."
    )
    active_tasks = serializers.IntegerField(help_text="Jobs claimed or running on the server.")
    queued_tasks = serializers.IntegerField(help_text="Jobs routed to the server, not claimed yet.")
    current_load = serializers.FloatField(help_text="(active + queued) / max_concurrent.")
    reported = serializers.DictField(help_text="The metrics of the server's last heartbeat.")

    class Meta:
        ref_name = "ServerMetricsValues"


class ServerMetricsSerializer(serializers.Serializer):
    server_id = serializers.UUIDField()
    metrics = ServerMetricsValuesSerializer()

    class Meta:
        ref_name = "ServerMetrics"


class HeartbeatAcceptedSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="The server's status as the API now shows it.")
    server_id = serializers.UUIDField()

    class Meta:
        ref_name = "HeartbeatAccepted"


class ServerLoadSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    load = serializers.FloatField()
    active_tasks = serializers.IntegerField()
    queued_tasks = serializers.IntegerField()
    max_concurrent = serializers.IntegerField()
    weight = serializers.IntegerField()

    class Meta:
        ref_name = "ServerLoad"


class LoadBalancerStatusSerializer(serializers.Serializer):
    algorithm = serializers.ChoiceField(choices=Algorithm.choices)
    server_distribution = serializers.DictField(
        child=ServerLoadSerializer(), help_text="By server id: every server that is not offline."
    )
    total_active_tasks = serializers.IntegerField()
    waiting_for_server = serializers.IntegerField(help_text="Queued jobs no server can take yet.")
    average_load = serializers.FloatField()

    class Meta:
        ref_name = "LoadBalancerStatus"


class AlgorithmUpdatedSerializer(serializers.Serializer):
    message = serializers.CharField()
    algorithm = serializers.ChoiceField(choices=Algorithm.choices)

    class Meta:
        ref_name = "AlgorithmUpdated"


SERVER_ID = "7d3e5b1a-2c4f-4e6a-9b8d-1f0e2d3c4b5a"
SERVER_EXAMPLE = {
    "id": SERVER_ID,
    "name": "gpu-server-01",
    "kind": "remote",
    "status": "online",
    "maintenance_reason": "",
    "endpoints": {"predict": "http://gpu1.example/predict", "health": "http://gpu1.example/health", "metrics": ""},
    "capabilities": ["image_creation"],
    "groups": ["production"],
    "priority": 2,
    "max_concurrent": 4,
    "queue_name": "gpu.7d3e5b1a2c4f4e6a",
    "registered_at": "2026-01-01T12:00:00Z",
    "last_heartbeat_at": "2026-01-01T12:05:00Z",
    "uptime": 310000,
    "time_since_last_heartbeat": 10000,
    "active_tasks": 1,
    "metrics": {"cpu": 45, "memory": 60, "gpu": 80},
}

SERVER_EXAMPLES = [OpenApiExample("a remote GPU server", value=SERVER_EXAMPLE, response_only=True)]
SERVER_LIST_EXAMPLES = [OpenApiExample("one server", value={"servers": [SERVER_EXAMPLE]}, response_only=True)]
REGISTER_EXAMPLES = [
    OpenApiExample(
        "a remote GPU server",
        value={
            "name": "gpu-server-01",
            "kind": "remote",
            "endpoints": {"predict": "http://gpu1.example/predict", "health": "http://gpu1.example/health"},
            "capabilities": ["image_creation"],
            "groups": ["production"],
            "priority": 2,
            "max_concurrent": 4,
        },
        request_only=True,
    ),
    OpenApiExample(
        "registered",
        value={
            "server_id": SERVER_ID,
            "key": "bsk_3f9a0c2e_Zp4T8vN2cR7yL1mQ6wE0sJ5hB9fK3gDxY2aW7uI4o",
            "message": "Server registered successfully. Keep the key: it is not shown again.",
            "server": {**SERVER_EXAMPLE, "last_heartbeat_at": None, "uptime": 0, "time_since_last_heartbeat": None},
        },
        response_only=True,
        status_codes=["201"],
    ),
]
UNREGISTERED_EXAMPLES = [
    OpenApiExample("unregistered", value={"message": "Server unregistered", "server_id": SERVER_ID}, response_only=True)
]
MAINTENANCE_EXAMPLES = [
    OpenApiExample("into maintenance", value={"maintenance": True, "reason": "fan replacement"}, request_only=True),
    OpenApiExample(
        "in maintenance",
        value={**SERVER_EXAMPLE, "status": "maintenance", "maintenance_reason": "fan replacement"},
        response_only=True,
    ),
]
METRICS_EXAMPLES = [
    OpenApiExample(
        "a busy server",
        value={
            "server_id": SERVER_ID,
            "metrics": {
                "uptime": 310000,
                "tasks_processed": 3,
                "success_count": 2,
                "failure_count": 1,
                "average_processing_time": 4200,
                "active_tasks": 1,
                "queued_tasks": 1,
                "current_load": 0.5,
                "reported": {"cpu": 45, "memory": 60, "gpu": 80},
            },
        },
        response_only=True,
    )
]
HEARTBEAT_EXAMPLES = [
    OpenApiExample(
        "healthy",
        value={"status": "healthy", "active_tasks": 3, "metrics": {"cpu": 45, "memory": 60, "gpu": 80}},
        request_only=True,
    ),
    OpenApiExample("accepted", value={"status": "online", "server_id": SERVER_ID}, response_only=True),
]
LOAD_BALANCER_EXAMPLES = [
    OpenApiExample(
        "one server",
        value={
            "algorithm": "least-connections",
            "server_distribution": {
                SERVER_ID: {
                    "name": "gpu-server-01",
                    "status": "online",
                    "load": 0.5,
                    "active_tasks": 1,
                    "queued_tasks": 1,
                    "max_concurrent": 4,
                    "weight": 2,
                }
            },
            "total_active_tasks": 1,
            "waiting_for_server": 0,
            "average_load": 0.5,
        },
        response_only=True,
    )
]
ALGORITHM_EXAMPLES = [
    OpenApiExample("least connections", value={"algorithm": "least-connections"}, request_only=True),
    OpenApiExample(
        "updated",
        value={"message": "Load balancer algorithm updated", "algorithm": "least-connections"},
        response_only=True,
    ),
]
