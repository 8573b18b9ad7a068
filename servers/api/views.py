from __future__ import annotations

import uuid

from rest_framework import permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from servers import selectors, services
from servers.api.serializers import (
    AlgorithmSerializer,
    HeartbeatSerializer,
    MaintenanceSerializer,
    ServerListQuerySerializer,
    ServerRegisterSerializer,
    ServerSerializer,
)
from servers.authentication import IsServer, ServerKeyAuthentication
from servers.models import Server
from tasks.errors import NotFound

# A server key is recognised (and refused with 403 on staff endpoints) before the
# user-token authentication, which would call it an invalid token.
WITH_SERVER_KEYS = [ServerKeyAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]


def server_or_404(server_id: str) -> Server:
    try:
        pk = uuid.UUID(server_id)
    except ValueError:
        pk = None
    server = Server.objects.filter(pk=pk).first() if pk else None
    if server is None:
        raise NotFound(f"Server {server_id} not found.")
    return server


class StaffView(APIView):
    authentication_classes = WITH_SERVER_KEYS
    permission_classes = [permissions.IsAdminUser]


class ServerListCreateView(StaffView):
    def get(self, request: Request) -> Response:
        query = ServerListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        servers = selectors.servers_list(**query.validated_data)
        return Response({"servers": ServerSerializer(servers, many=True).data})

    def post(self, request: Request) -> Response:
        register = ServerRegisterSerializer(data=request.data)
        register.is_valid(raise_exception=True)
        issued = services.server_register(**register.validated_data)
        body = {
            "server_id": str(issued.server.pk),
            "key": issued.key,
            "message": "Server registered successfully. Keep the key: it is not shown again.",
            "server": ServerSerializer(issued.server).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class ServerDetailView(StaffView):
    def get(self, request: Request, server_id: str) -> Response:
        return Response(ServerSerializer(server_or_404(server_id)).data)

    def delete(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        services.server_unregister(server=server)
        return Response({"message": "Server unregistered", "server_id": str(server.pk)})


class ServerMaintenanceView(StaffView):
    def post(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        body = MaintenanceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = services.server_set_maintenance(server=server, **body.validated_data)
        return Response(ServerSerializer(server).data)


class ServerMetricsView(StaffView):
    def get(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        return Response({"server_id": str(server.pk), "metrics": selectors.server_metrics(server=server)})


class ServerHeartbeatView(APIView):
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServer]

    def post(self, request: Request, server_id: str) -> Response:
        server: Server = request.auth
        if str(server.pk) != server_id:
            # A key speaks only for its own server.
            raise NotFound(f"Server {server_id} not found.")
        body = HeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = services.server_heartbeat(server=server, **body.validated_data)
        return Response({"status": server.display_status, "server_id": str(server.pk)})


class LoadBalancerView(StaffView):
    def get(self, request: Request) -> Response:
        return Response(selectors.load_balancer_status())


class LoadBalancerAlgorithmView(StaffView):
    def post(self, request: Request) -> Response:
        body = AlgorithmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        algorithm = services.load_balancer_set_algorithm(**body.validated_data)
        return Response({"message": "Load balancer algorithm updated", "algorithm": algorithm})
