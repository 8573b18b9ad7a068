"""The studio's routes (shared/seeds/003); its /ws/generation socket is in streams."""

from __future__ import annotations

from django.urls import path

from tasks.compat.studio import views
from tasks.compat.studio.settings_view import SettingsView

urlpatterns = [
    path("api/generate/text-to-image", views.TextToImageView.as_view(), name="studio-text-to-image"),
    path("api/generate/image-to-image", views.ImageToImageView.as_view(), name="studio-image-to-image"),
    path("api/generate/upscale", views.UpscaleView.as_view(), name="studio-upscale"),
    path("api/history", views.HistoryListView.as_view(), name="studio-history"),
    path("api/history/<str:generation_id>", views.HistoryDetailView.as_view(), name="studio-history-detail"),
    path("api/settings", SettingsView.as_view(), name="studio-settings"),
]
