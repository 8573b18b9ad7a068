from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.models import Scope
from backserv_site.errors import NotFound
from backserv_site.schema import errors
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
    TaskReportSerializer,
)
from servers.authentication import IsServer, ServerKeyAuthentication
from servers.models import Server
from servers.remote import task_report_from_server
from servers.stats import stats_server
from tasks.api.lookup import one_or_not_found
from tasks.api.schema import TASK_REPORT_EXAMPLES
from tasks.api.serializers import TaskSerializer
from tasks.api.stats import DATE_PARAMETER, requested_day
from tasks.api.views import TaskDetailView
from tasks.models import Task

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


SERVER_STATS_EXAMPLE = OpenApiExample(
    "a server's day",
    value={
        "server_id": "6f1c1f3e-8d4e-4f57-9a43-2f7d0f6b2c11",
        "name": "gpu-server-01",
        "date": "2026-11-22",
        "tasks_processed": 150,
        "success_count": 147,
        "failure_count": 3,
        "success_rate": 0.98,
        "average_processing_time_ms": 4500,
        "uptime": 0.995,
    },
    response_only=True,
)


class ServerStatsView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        summary="One server's statistics of a day (staff)",
        description=(
            "The jobs the server finished that day (by completion time): processed (SUCCESS, FAILURE, TIMEOUT), "
            "successes, failures, success rate and mean run time; and `uptime`, the fraction of the day so far "
            "(from its registration) it was online."
        ),
        parameters=[DATE_PARAMETER],
        examples=[SERVER_STATS_EXAMPLE],
        responses={200: OpenApiTypes.OBJECT, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, server_id: str) -> Response:
        day = requested_day(request, empty_is_absent=False)
        return Response(stats_server(server=server_or_404(server_id), day=day))


def server_task(server: Server, task_id: str) -> Task:
    """A job routed to this server; any other is not found, as for users."""
    return one_or_not_found(Task.objects.filter(server=server), task_id, "Task")


class TaskReportView(TaskDetailView):
    """/api/v1/tasks/{id}: users read and delete their jobs (tasks.api.views); a remote
    GPU server reports on the jobs it runs (PUT) with its server key, which reads
    nothing else."""

    authentication_classes = WITH_SERVER_KEYS

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "PUT":
            return [IsServer()]
        return super().get_permissions()

    @extend_schema(
        summary="Report on a job (GPU servers)",
        description="A remote GPU server's progress or outcome for a job assigned to it, with its server key.",
        auth=[{"serverKey": []}],
        request=TaskReportSerializer,
        responses={200: TaskSerializer, **errors(400, 401, 403, 404, 409)},
        examples=TASK_REPORT_EXAMPLES,
    )
    def put(self, request: Request, task_id: str) -> Response:
        task = server_task(request.auth, task_id)
        report = TaskReportSerializer(data=request.data)
        report.is_valid(raise_exception=True)
        task = task_report_from_server(server=request.auth, task=task, **report.validated_data)
        return Response(TaskSerializer(task, context={"request": request}).data)
