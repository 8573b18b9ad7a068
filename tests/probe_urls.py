"""The site's URLconf plus probe views that exercise what real staff-only routes and
crashing views get from the defaults (issues adding such routes rely on the same)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from backserv_site.urls import handler404, handler500
from backserv_site.urls import urlpatterns as site_urlpatterns
from tasks.compat.distributed.base import DistributedView


class StaffProbeView(APIView):
    """Like a staff-only route: admin scope for every method; POST limited like a
    server registration."""

    required_scope = Scope.ADMIN
    throttle_scope = "server_registration"
    throttle_methods = ("POST",)

    def get(self, request: Request) -> Response:
        return Response({"staff": True})

    def post(self, request: Request) -> Response:
        return Response({"registered": True}, status=201)


class ForgotAuthView(APIView):
    """A route whose author opened it by mistake: the URLconf walk must catch it."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"open": True})


class CrashingApiView(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("boom: internal detail that must not leak")


class CrashingDistributedView(DistributedView):
    """A distributed-system document route (shared/seeds/004) that crashes."""

    def get(self, request: Request) -> Response:
        raise RuntimeError("boom: internal detail that must not leak")


def crashing_plain_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom: internal detail that must not leak")


urlpatterns = [
    path("probe/staff", StaffProbeView.as_view(), name="probe-staff"),
    path("probe/open", ForgotAuthView.as_view(), name="probe-open"),
    path("probe/crash", CrashingApiView.as_view(), name="probe-crash"),
    path("probe/plain-crash", crashing_plain_view, name="probe-plain-crash"),
    path("api/stats/probe-crash", CrashingDistributedView.as_view(), name="probe-distributed-crash"),
    path("api/stats/probe-plain-crash", crashing_plain_view, name="probe-distributed-plain-crash"),
    *site_urlpatterns,
]

__all__ = ["handler404", "handler500", "urlpatterns"]
