from __future__ import annotations

from django.urls import path

from servers.api import task_types, views

urlpatterns = [
    path("servers", views.ServerListCreateView.as_view(), name="server-list"),
    path("servers/<str:server_id>", views.ServerDetailView.as_view(), name="server-detail"),
    path("servers/<str:server_id>/maintenance", views.ServerMaintenanceView.as_view(), name="server-maintenance"),
    path("servers/<str:server_id>/metrics", views.ServerMetricsView.as_view(), name="server-metrics"),
    path("servers/<str:server_id>/heartbeat", views.ServerHeartbeatView.as_view(), name="server-heartbeat"),
    path("task-types", task_types.TaskTypeListView.as_view(), name="task-type-list"),
    path("task-types/<str:name>", task_types.TaskTypeDetailView.as_view(), name="task-type-detail"),
    path("stats/load-balancer", views.LoadBalancerView.as_view(), name="load-balancer"),
    path("stats/load-balancer/algorithm", views.LoadBalancerAlgorithmView.as_view(), name="load-balancer-algorithm"),
]
