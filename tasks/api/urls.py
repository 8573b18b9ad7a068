from __future__ import annotations

from django.urls import path

from tasks.api import views

urlpatterns = [
    path("tasks", views.TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<str:task_id>", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<str:task_id>/cancel", views.TaskCancelView.as_view(), name="task-cancel"),
    path("tasks/<str:task_id>/retry", views.TaskRetryView.as_view(), name="task-retry"),
]
