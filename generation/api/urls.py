from __future__ import annotations

from django.urls import path

from generation.api import views

urlpatterns = [
    path("uploads", views.UploadListCreateView.as_view(), name="upload-list"),
    path("uploads/<str:upload_id>", views.UploadDetailView.as_view(), name="upload-detail"),
]
