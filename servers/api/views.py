from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.models import Scope
from servers import selectors, services
from servers.api.schema import (
    ALGORITHM_EXAMPLES,
    HEARTBEAT_EXAMPLES,
    LOAD_BALANCER_EXAMPLES,
    MAINTENANCE_EXAMPLES,
    METRICS_EXAMPLES,
    REGISTER_EXAMPLES,
    SERVER_EXAMPLES,
    SERVER_LIST_EXAMPLES,
    UNREGISTERED_EXAMPLES,
    AlgorithmUpdatedSerializer,
    HeartbeatAcceptedSerializer,
    LoadBalancerStatusSerializer,
    ServerListSerializer,
    ServerMetricsSerializer,
    ServerRegisteredSerializer,
    ServerUnregisteredSerializer,
)
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
from tasks.api.lookup import one_or_not_found
from tasks.api.schema import errors
from tasks.errors import NotFound

# A server key is recognised (and refused with 403 on staff endpoints) before the
# user-token authentication, which would call it an invalid token.
WITH_SERVER_KEYS = [ServerKeyAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]


def server_or_404(server_id: str) -> Server:
    return one_or_not_found(Server.objects.all(), server_id, "Server")


class StaffView(APIView):
    """Staff only: the default scope permission with the `admin` scope, which only staff
    users hold. A server key authenticates here but carries no scope (403)."""

    authentication_classes = WITH_SERVER_KEYS
    required_scope = Scope.ADMIN


class ServerListCreateView(StaffView):
    throttle_scope = "server_registration"
    throttle_methods = frozenset({"POST"})

    @extend_schema(
        summary="List GPU servers (staff)",
        operation_id="v1_servers_list",
        parameters=[ServerListQuerySerializer],
        responses={200: ServerListSerializer, **errors(400, 401, 403)},
        examples=SERVER_LIST_EXAMPLES,
    )
    def get(self, request: Request) -> Response:
        query = ServerListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        servers = selectors.servers_list(**query.validated_data)
        return Response({"servers": ServerSerializer(servers, many=True).data})

    @extend_schema(
        summary="Register a GPU server (staff)",
        description="Answers with the server's key `bsk_…`, shown only this once: the server sends it "
        "with its heartbeats and job reports.",
        request=ServerRegisterSerializer,
        responses={
            201: OpenApiResponse(ServerRegisteredSerializer, description="Registered; keep the key."),
            **errors(400, 401, 403, 409),
        },
        examples=REGISTER_EXAMPLES,
    )
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
    @extend_schema(
        summary="Get a GPU server (staff)",
        responses={200: ServerSerializer, **errors(401, 403, 404)},
        examples=SERVER_EXAMPLES,
    )
    def get(self, request: Request, server_id: str) -> Response:
        return Response(ServerSerializer(server_or_404(server_id)).data)

    @extend_schema(
        summary="Unregister a GPU server (staff)",
        description="Its jobs that have not finished are queued again for other servers.",
        responses={200: ServerUnregisteredSerializer, **errors(401, 403, 404)},
        examples=UNREGISTERED_EXAMPLES,
    )
    def delete(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        services.server_unregister(server=server)
        return Response({"message": "Server unregistered", "server_id": str(server.pk)})


class ServerMaintenanceView(StaffView):
    @extend_schema(
        summary="Put a GPU server in or out of maintenance (staff)",
        description="In maintenance a server gets no new jobs and finishes the ones it runs.",
        request=MaintenanceSerializer,
        responses={200: ServerSerializer, **errors(400, 401, 403, 404)},
        examples=MAINTENANCE_EXAMPLES,
    )
    def post(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        body = MaintenanceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = services.server_set_maintenance(server=server, **body.validated_data)
        return Response(ServerSerializer(server).data)


class ServerMetricsView(StaffView):
    @extend_schema(
        summary="A GPU server's job counts and load (staff)",
        responses={200: ServerMetricsSerializer, **errors(401, 403, 404)},
        examples=METRICS_EXAMPLES,
    )
    def get(self, request: Request, server_id: str) -> Response:
        server = server_or_404(server_id)
        return Response({"server_id": str(server.pk), "metrics": selectors.server_metrics(server=server)})


class ServerHeartbeatView(APIView):
    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [IsServer]

    @extend_schema(
        summary="Heartbeat (GPU servers)",
        description="With the server's own key. `status`: online, healthy or ok (online); degraded or "
        "unhealthy (degraded). A server that stops sending heartbeats goes offline.",
        request=HeartbeatSerializer,
        responses={200: HeartbeatAcceptedSerializer, **errors(400, 401, 404, 409)},
        examples=HEARTBEAT_EXAMPLES,
    )
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
    @extend_schema(
        summary="The load balancer's algorithm and each server's load (staff)",
        responses={200: LoadBalancerStatusSerializer, **errors(401, 403)},
        examples=LOAD_BALANCER_EXAMPLES,
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.load_balancer_status())


class LoadBalancerAlgorithmView(StaffView):
    @extend_schema(
        summary="Set the load balancer's algorithm (staff)",
        request=AlgorithmSerializer,
        responses={200: AlgorithmUpdatedSerializer, **errors(400, 401, 403)},
        examples=ALGORITHM_EXAMPLES,
    )
    def post(self, request: Request) -> Response:
        body = AlgorithmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        algorithm = services.load_balancer_set_algorithm(**body.validated_data)
        return Response({"message": "Load balancer algorithm updated", "algorithm": algorithm})
