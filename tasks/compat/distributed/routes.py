"""The distributed-system document's API routes (shared/seeds/004); also the URLconf its
OpenAPI description (/openapi.json) is generated from."""

from __future__ import annotations

from django.urls import path

from tasks.compat.distributed import server_views as servers
from tasks.compat.distributed import stats_views as stats
from tasks.compat.distributed import task_views as tasks

urlpatterns = [
    path("api/task", tasks.TaskCreateView.as_view(), name="distributed-task-create"),
    path("api/task/<str:task_id>", tasks.TaskDetailView.as_view(), name="distributed-task"),
    path("api/task/<str:task_id>/retry", tasks.TaskRetryView.as_view(), name="distributed-task-retry"),
    path("api/task/<str:task_id>/cancel", tasks.TaskCancelView.as_view(), name="distributed-task-cancel"),
    path("api/servers", servers.ServerListCreateView.as_view(), name="distributed-servers"),
    path("api/servers/<str:server_id>", servers.ServerDetailView.as_view(), name="distributed-server"),
    path(
        "api/servers/<str:server_id>/heartbeat",
        servers.ServerHeartbeatView.as_view(),
        name="distributed-server-heartbeat",
    ),
    path(
        "api/servers/<str:server_id>/maintenance",
        servers.ServerMaintenanceView.as_view(),
        name="distributed-server-maintenance",
    ),
    path("api/servers/<str:server_id>/metrics", servers.ServerMetricsView.as_view(), name="distributed-server-metrics"),
    path("api/stats/tasks", stats.TaskStatsView.as_view(), name="distributed-stats-tasks"),
    path("api/stats/hourly", stats.HourlyStatsView.as_view(), name="distributed-stats-hourly"),
    path("api/stats/servers/<str:server_id>", stats.ServerStatsView.as_view(), name="distributed-stats-server"),
    path("api/stats/load-balancer", stats.LoadBalancerView.as_view(), name="distributed-load-balancer"),
    path(
        "api/stats/load-balancer/algorithm",
        stats.LoadBalancerAlgorithmView.as_view(),
        name="distributed-load-balancer-algorithm",
    ),
]
