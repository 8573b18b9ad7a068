"""Back.Serv's URLs plus two bare DRF views under the same server, middleware and DRF
settings (authentication, scopes, throttling): what the API costs before any of
Back.Serv's own work."""

from __future__ import annotations

from functools import cache

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import user_ensure
from tasks.models import Task

# The baseline's rows belong to a user of their own. Had they been the caller's, every
# submit of the caller's that the baseline alternates with would count them among its
# unfinished jobs (the quota check): thousands of rows that no submit made.
BASELINE_OWNER = "bench-baseline"


@cache
def baseline_owner_id() -> int:
    return user_ensure(username=BASELINE_OWNER).pk


class BareInsert(APIView):
    """Submit's baseline: one INSERT of a job row, its id back."""

    def post(self, request: Request) -> Response:
        params = request.data.get("params", {})
        task = Task.objects.create(owner_id=baseline_owner_id(), task_type="image_creation", params=params)
        return Response({"task_id": str(task.pk)}, status=202)


class BareConstant(APIView):
    """Status' baseline: constant JSON."""

    def get(self, request: Request, task_id: str) -> Response:
        return Response({"task_id": task_id, "state": "PENDING", "progress": 0.0})


urlpatterns = [
    path("bench/insert", BareInsert.as_view()),
    path("bench/constant/<str:task_id>", BareConstant.as_view()),
    path("", include("backserv_site.urls")),
]
