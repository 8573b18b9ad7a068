"""Back.Serv's original routes (shared/seeds/000), served at the root as on its port 4093."""

from __future__ import annotations

from django.urls import re_path

from tasks.compat.backserv import views

urlpatterns = [
    re_path(r"^submit_task/?$", views.SubmitTaskView.as_view(), name="backserv-submit"),
    re_path(r"^query_task/(?P<ticket_id>[^/]+)/?$", views.QueryTaskView.as_view(), name="backserv-query"),
    re_path(r"^cancel_task/(?P<ticket_id>[^/]+)/?$", views.CancelTaskView.as_view(), name="backserv-cancel"),
]
