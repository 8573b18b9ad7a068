"""Shapes of Back.Serv's own /api/v1 servers API (snake_case). The camelCase shapes of
the distributed-system document are separate serializers over the same services."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from backserv_site.serializers import StrictSerializer
from servers.models import Algorithm, Server, ServerKind
from servers.remote import REPORTED_STATES
from servers.selectors import milliseconds_since


class EndpointsSerializer(serializers.Serializer):
    predict = serializers.URLField(required=False, allow_blank=True, default="")
    health = serializers.URLField(required=False, allow_blank=True, default="")
    metrics = serializers.URLField(required=False, allow_blank=True, default="")


class ServerRegisterSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", max_length=100)
    kind = serializers.ChoiceField(choices=ServerKind.choices, default=ServerKind.REMOTE)
    endpoints = EndpointsSerializer(required=False)
    capabilities = serializers.ListField(child=serializers.CharField(max_length=50), allow_empty=False)
    groups = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    priority = serializers.IntegerField(min_value=1, max_value=1000, default=1)
    max_concurrent = serializers.IntegerField(min_value=1, max_value=10000, default=1)
    api_key = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        default="",
        write_only=True,
        help_text="The server's own key, sent to it as `Authorization: Bearer` with each job and health check.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        endpoints = attrs.pop("endpoints", None) or {}
        return {
            **attrs,
            "predict_url": endpoints.get("predict", ""),
            "health_url": endpoints.get("health", ""),
            "metrics_url": endpoints.get("metrics", ""),
        }


class ServerSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="display_status")
    endpoints = serializers.SerializerMethodField()
    uptime = serializers.SerializerMethodField()
    time_since_last_heartbeat = serializers.SerializerMethodField()
    active_tasks = serializers.IntegerField(source="reported_active_tasks")

    class Meta:
        model = Server
        fields = [
            "id",
            "name",
            "kind",
            "status",
            "maintenance_reason",
            "endpoints",
            "capabilities",
            "groups",
            "priority",
            "max_concurrent",
            "queue_name",
            "registered_at",
            "last_heartbeat_at",
            "uptime",
            "time_since_last_heartbeat",
            "active_tasks",
            "metrics",
        ]
        read_only_fields = fields

    def get_endpoints(self, server: Server) -> dict[str, str]:
        return {"predict": server.predict_url, "health": server.health_url, "metrics": server.metrics_url}

    def get_uptime(self, server: Server) -> int | None:
        return milliseconds_since(server.registered_at, timezone.now())

    def get_time_since_last_heartbeat(self, server: Server) -> int | None:
        return milliseconds_since(server.last_heartbeat_at, timezone.now())


class ServerListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["online", "offline", "maintenance", "degraded"], required=False)
    group = serializers.CharField(required=False, max_length=100)


class HeartbeatSerializer(StrictSerializer):
    status = serializers.CharField(required=False, default="online", max_length=20)
    active_tasks = serializers.IntegerField(required=False, min_value=0, default=0)
    metrics = serializers.DictField(required=False, default=dict)


class MaintenanceSerializer(StrictSerializer):
    maintenance = serializers.BooleanField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class AlgorithmSerializer(StrictSerializer):
    algorithm = serializers.ChoiceField(choices=Algorithm.choices)


class TaskReportSerializer(StrictSerializer):
    """What a remote GPU server reports on a job it runs (PUT /api/v1/tasks/{id})."""

    state = serializers.ChoiceField(choices=list(REPORTED_STATES), required=False)
    status = serializers.ChoiceField(choices=list(REPORTED_STATES), required=False)
    progress = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    result = serializers.DictField(required=False)
    error = serializers.DictField(child=serializers.CharField(max_length=2000), required=False)
    attempt = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        state, status = attrs.pop("state", None), attrs.pop("status", None)
        if state and status and state != status:
            raise serializers.ValidationError({"state": ["state and status disagree; send one."]})
        attrs["state"] = state or status
        if attrs["state"] is None and "progress" not in attrs:
            raise serializers.ValidationError({"state": ["Send a state, a progress, or both."]})
        return attrs
