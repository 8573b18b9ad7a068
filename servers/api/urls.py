from __future__ import annotations

from django.urls import path

from servers.api import views

urlpatterns = [
    # A job's own route: users' GET and DELETE (tasks.api.views), GPU servers' PUT.
    path("tasks/<str:task_id>", views.TaskReportView.as_view(), name="task-detail"),
    path("servers", views.ServerListCreateView.as_view(), name="server-list"),
    path("servers/<str:server_id>", views.ServerDetailView.as_view(), name="server-detail"),
    path("servers/<str:server_id>/maintenance", views.ServerMaintenanceView.as_view(), name="server-maintenance"),
    path("servers/<str:server_id>/metrics", views.ServerMetricsView.as_view(), name="server-metrics"),
    path("servers/<str:server_id>/heartbeat", views.ServerHeartbeatView.as_view(), name="server-heartbeat"),
    path("stats/servers/<str:server_id>", views.ServerStatsView.as_view(), name="stats-server"),
    path("stats/load-balancer", views.LoadBalancerView.as_view(), name="load-balancer"),
    path("stats/load-balancer/algorithm", views.LoadBalancerAlgorithmView.as_view(), name="load-balancer-algorithm"),
]
