from __future__ import annotations

from django.urls import include, path, re_path

from generation.api.studio_settings import SettingsView
from tasks.compat import backserv, studio

# Back.Serv 000 (served at the root, as on its port 4093), the studio 003 and the
# distributed system 004.
urlpatterns = [
    re_path(r"^submit_task/?$", backserv.SubmitTaskView.as_view(), name="backserv-submit"),
    re_path(r"^query_task/(?P<ticket_id>[^/]+)/?$", backserv.QueryTaskView.as_view(), name="backserv-query"),
    re_path(r"^cancel_task/(?P<ticket_id>[^/]+)/?$", backserv.CancelTaskView.as_view(), name="backserv-cancel"),
    path("api/generate/text-to-image", studio.TextToImageView.as_view(), name="studio-text-to-image"),
    path("api/generate/image-to-image", studio.ImageToImageView.as_view(), name="studio-image-to-image"),
    path("api/generate/upscale", studio.UpscaleView.as_view(), name="studio-upscale"),
    path("api/history", studio.HistoryListView.as_view(), name="studio-history"),
    path("api/history/<str:generation_id>", studio.HistoryDetailView.as_view(), name="studio-history-detail"),
    path("api/settings", SettingsView.as_view(), name="studio-settings"),
    path("", include("tasks.compat.distributed_urls")),
]
