"""The distributed-system document's /api/servers routes (shared/seeds/004), admin role:
register, list, heartbeat, unregister, maintenance, metrics, over servers.services and
servers.selectors. Servers it registers are remote HTTP GPU servers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasScope
from backserv_site.errors import InvalidInput, NotFound
from servers import selectors, services
from servers.api.serializers import EndpointsSerializer, ServerListQuerySerializer
from servers.authentication import IsServer
from servers.models import Server, ServerKind
from servers.selectors import milliseconds_since
from tasks.compat.distributed import schema_admin as docs
from tasks.compat.distributed.base import StaffView, camel_field, epoch_ms, one_found
from tasks.compat.distributed.task_views import backserv_task_type
from tasks.compat.renaming import invalid_input_renamed


def server_or_404(server_id: str) -> Server:
    return one_found(Server.objects.all(), server_id, "Server")


def server_body(server: Server, *, now: datetime) -> dict[str, Any]:
    """The document's fields (times in epoch ms, durations in ms), plus what a client
    needs to tell servers apart: kind, endpoints, capabilities, capacity, load."""
    return {
        "id": str(server.pk),
        "name": server.name,
        "status": server.display_status,
        "registeredAt": epoch_ms(server.registered_at),
        "lastHeartbeat": epoch_ms(server.last_heartbeat_at),
        "uptime": milliseconds_since(server.registered_at, now),
        "timeSinceLastHeartbeat": milliseconds_since(server.last_heartbeat_at, now),
        "groups": server.groups,
        "priority": server.priority,
        "kind": server.kind,
        "endpoints": {"predict": server.predict_url, "health": server.health_url, "metrics": server.metrics_url},
        "capabilities": server.capabilities,
        "maxConcurrent": server.max_concurrent,
        "activeTasks": server.reported_active_tasks,
        "maintenanceReason": server.maintenance_reason,
    }


class ServerRegisterSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", max_length=100)
    endpoints = EndpointsSerializer()
    apiKey = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    maxConcurrent = serializers.IntegerField(min_value=1, max_value=10000, default=1)
    capabilities = serializers.ListField(child=serializers.CharField(max_length=50), allow_empty=False, max_length=50)
    groups = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    priority = serializers.IntegerField(min_value=1, max_value=1000, default=1)


def _split_capabilities(names: list[str]) -> tuple[list[str], list[str]]:
    """(Back.Serv task types, in either spelling; the other job types, lowercased)."""
    task_types, others = [], []
    for name in names:
        task_type = backserv_task_type(name)
        if task_type is not None:
            task_types.append(task_type)
        else:
            others.append(name.strip().lower())
    return task_types, others


class ServerListCreateView(StaffView):
    throttle_scope = "server_registration"
    throttle_methods = frozenset({"POST"})

    @extend_schema(request=ServerRegisterSerializer, **docs.REGISTER_SERVER)
    def post(self, request: Request) -> Response:
        incoming = ServerRegisterSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        task_types, others = _split_capabilities(data["capabilities"])
        try:
            issued = services.server_register(
                name=data["name"],
                kind=ServerKind.REMOTE,
                predict_url=data["endpoints"]["predict"],
                health_url=data["endpoints"]["health"],
                metrics_url=data["endpoints"]["metrics"],
                api_key=data["apiKey"],
                capabilities=task_types,
                other_capabilities=others,
                groups=data["groups"],
                priority=data["priority"],
                max_concurrent=data["maxConcurrent"],
            )
        except InvalidInput as error:
            raise invalid_input_renamed(error, camel_field) from None
        body = {
            "serverId": str(issued.server.pk),
            "message": "Server registered successfully",
            # Shown this once: the server's key for its heartbeats and job updates.
            "key": issued.key,
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(**docs.LIST_SERVERS)
    def get(self, request: Request) -> Response:
        query = ServerListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        servers = selectors.servers_list(**query.validated_data)
        now = timezone.now()
        return Response({"servers": [server_body(server, now=now) for server in servers]})


class ServerDetailView(StaffView):
    @extend_schema(**docs.UNREGISTER_SERVER)
    def delete(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        services.server_unregister(server=server)
        return Response({"message": "Server unregistered", "serverId": str(server.pk)})


class IsThisServerOrAdmin(BasePermission):
    """A heartbeat comes from the server itself (its key) or from an admin."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if IsServer().has_permission(request, view):
            return True
        return HasScope().has_permission(request, view)


class HeartbeatSerializer(serializers.Serializer):
    status = serializers.CharField(required=False, default="online", max_length=20)
    activeTasks = serializers.IntegerField(required=False, min_value=0, default=0)
    metrics = serializers.DictField(required=False, default=dict)


class ServerHeartbeatView(StaffView):
    permission_classes = [IsThisServerOrAdmin]

    @extend_schema(request=HeartbeatSerializer, **docs.HEARTBEAT)
    def post(self, request: Request, server_id: str) -> Response:
        if isinstance(request.auth, Server):
            if str(request.auth.pk) != server_id:
                # A key speaks only for its own server.
                raise NotFound(f"Server not found: {server_id}")
            server = request.auth
        else:
            server = server_or_404(server_id)
        incoming = HeartbeatSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        server = services.server_heartbeat(
            server=server, status=data["status"], active_tasks=data["activeTasks"], metrics=data["metrics"]
        )
        return Response({"message": "Heartbeat received", "serverId": str(server.pk), "status": server.display_status})


class MaintenanceSerializer(serializers.Serializer):
    maintenance = serializers.BooleanField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class ServerMaintenanceView(StaffView):
    @extend_schema(request=MaintenanceSerializer, **docs.MAINTENANCE)
    def post(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        incoming = MaintenanceSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        server = services.server_set_maintenance(server=server, **incoming.validated_data)
        return Response(
            {
                "message": f"Maintenance mode {'enabled' if server.maintenance else 'disabled'}",
                "serverId": str(server.pk),
                "maintenance": server.maintenance,
                "reason": server.maintenance_reason,
                "status": server.display_status,
            }
        )


class ServerMetricsView(StaffView):
    @extend_schema(**docs.SERVER_METRICS)
    def get(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        metrics = selectors.server_metrics(server=server)
        return Response(
            {
                "serverId": str(server.pk),
                "metrics": {
                    "uptime": metrics["uptime"],
                    "tasksProcessed": metrics["tasks_processed"],
                    "successCount": metrics["success_count"],
                    "failureCount": metrics["failure_count"],
                    "averageProcessingTime": metrics["average_processing_time"],
                    "currentLoad": metrics["current_load"],
                    "activeTasks": metrics["active_tasks"],
                    "queuedTasks": metrics["queued_tasks"],
                    "reported": metrics["reported"],
                },
            }
        )
