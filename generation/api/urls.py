from __future__ import annotations

from django.urls import path

from generation.api import task_types, views

urlpatterns = [
    path("uploads", views.UploadListCreateView.as_view(), name="upload-list"),
    path("uploads/<str:upload_id>", views.UploadDetailView.as_view(), name="upload-detail"),
    path("task-types", task_types.TaskTypeListView.as_view(), name="task-type-list"),
    path("task-types/<str:name>", task_types.TaskTypeDetailView.as_view(), name="task-type-detail"),
]
