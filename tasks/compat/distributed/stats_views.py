"""The distributed-system document's /api/stats routes (shared/seeds/004), admin role:
the day's task figures, per hour, per server, and the load balancer, over tasks.stats
and servers.selectors. Days are UTC calendar days (`?date=YYYY-MM-DD`, else today)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from servers import selectors, services
from servers.models import Algorithm, Server
from servers.stats import stats_server
from tasks import stats
from tasks.api.stats import requested_day
from tasks.compat.distributed import schema_admin as docs
from tasks.compat.distributed.base import StaffView, one_found


class TaskStatsView(StaffView):
    @extend_schema(**docs.TASK_STATS)
    def get(self, request: Request) -> Response:
        day = stats.stats_tasks(day=requested_day(request))
        return Response(
            {
                "date": day["date"],
                "totalTasks": day["total_tasks"],
                "pendingTasks": day["pending_tasks"],
                "runningTasks": day["running_tasks"],
                "successfulTasks": day["successful_tasks"],
                "failedTasks": day["failed_tasks"],
                "cancelledTasks": day["revoked_tasks"],
                "retriedTasks": day["retried_tasks"],
                "averageProcessingTime": day["average_processing_time_ms"],
                "serverCount": day["server_count"],
                "topServers": [
                    {
                        "serverId": server["server_id"],
                        "name": server["name"],
                        "tasksProcessed": server["tasks_processed"],
                        "successRate": server["success_rate"],
                    }
                    for server in day["top_servers"]
                ],
                "hourlyTrend": day["hourly_trend"],
            }
        )


class HourlyStatsView(StaffView):
    @extend_schema(**docs.HOURLY_STATS)
    def get(self, request: Request) -> Response:
        day = requested_day(request)
        hours = [
            {
                "hour": hour["hour"],
                "created": hour["created"],
                "completed": hour["completed"],
                "failed": hour["failed"],
                "averageTime": hour["average_time_ms"],
            }
            for hour in stats.stats_hourly(day=day)
        ]
        return Response({"date": day.isoformat(), "hours": hours})


class ServerStatsView(StaffView):
    @extend_schema(**docs.SERVER_STATS)
    def get(self, request: Request, server_id: str) -> Response:
        day = requested_day(request)
        server = one_found(Server.objects.all(), server_id, "Server")
        figures = stats_server(server=server, day=day)
        return Response(
            {
                "serverId": figures["server_id"],
                "name": figures["name"],
                "date": figures["date"],
                "tasksProcessed": figures["tasks_processed"],
                "successCount": figures["success_count"],
                "failureCount": figures["failure_count"],
                "successRate": figures["success_rate"],
                "averageProcessingTime": figures["average_processing_time_ms"],
                "uptime": figures["uptime"],
            }
        )


def _server_load(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "load": entry["load"],
        "activeTasks": entry["active_tasks"],
        "weight": entry["weight"],
        "queuedTasks": entry["queued_tasks"],
        "maxConcurrent": entry["max_concurrent"],
        "name": entry["name"],
        "status": entry["status"],
    }


class LoadBalancerView(StaffView):
    @extend_schema(**docs.LOAD_BALANCER)
    def get(self, request: Request) -> Response:
        balancer = selectors.load_balancer_status()
        return Response(
            {
                "algorithm": balancer["algorithm"],
                "serverDistribution": {
                    server_id: _server_load(entry) for server_id, entry in balancer["server_distribution"].items()
                },
                "totalActiveTasks": balancer["total_active_tasks"],
                "averageLoad": balancer["average_load"],
                "waitingForServer": balancer["waiting_for_server"],
            }
        )


class AlgorithmSerializer(serializers.Serializer):
    algorithm = serializers.ChoiceField(choices=Algorithm.choices)


class LoadBalancerAlgorithmView(StaffView):
    @extend_schema(request=AlgorithmSerializer, **docs.SET_ALGORITHM)
    def post(self, request: Request) -> Response:
        incoming = AlgorithmSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        algorithm = services.load_balancer_set_algorithm(**incoming.validated_data)
        return Response({"message": "Load balancer algorithm updated", "algorithm": algorithm})
