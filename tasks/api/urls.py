from __future__ import annotations

from django.urls import path

from tasks.api import client_views, stats, usage, views

urlpatterns = [
    path("stats/tasks", stats.TaskStatsView.as_view(), name="stats-tasks"),
    path("stats/hourly", stats.HourlyStatsView.as_view(), name="stats-hourly"),
    path("tasks", views.TaskListCreateView.as_view(), name="task-list"),
    # Before tasks/<id>: "batch" is not a job id.
    path("tasks/batch", client_views.TaskBatchView.as_view(), name="task-batch"),
    # tasks/<id> itself is mounted by servers.api.urls: GPU servers report there (PUT).
    path("tasks/<str:task_id>/cancel", views.TaskCancelView.as_view(), name="task-cancel"),
    path("tasks/<str:task_id>/retry", views.TaskRetryView.as_view(), name="task-retry"),
    path("tasks/<str:task_id>/events", client_views.TaskEventsView.as_view(), name="task-events"),
    path("tasks/<str:task_id>/webhooks", client_views.TaskWebhookDeliveriesView.as_view(), name="task-webhooks"),
    path("usage", usage.UsageView.as_view(), name="usage"),
    path("webhook-secret", client_views.WebhookSecretView.as_view(), name="webhook-secret"),
    path(
        "webhook-deliveries/<str:delivery_id>/redeliver",
        client_views.WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
]
