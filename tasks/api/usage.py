"""GET /api/v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD: the caller's jobs that ended in a
range of UTC days (both included), their outcomes and GPU seconds, in all, per task
type and per day. Staff carrying the admin scope may ask for another user (`user=`, a
username); anyone else naming another user gets the 404 an unknown one gets, so the
route never tells which usernames exist."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import has_admin_access
from backserv_site.errors import InvalidInput, NotFound
from backserv_site.schema import errors
from tasks.usage import MAX_RANGE_DAYS, days_bounds, usage_of

DEFAULT_RANGE_DAYS = 30


def _figures() -> dict[str, serializers.Field]:
    return {
        "jobs": serializers.IntegerField(help_text="Jobs that ended (cancelled ones too)."),
        "succeeded": serializers.IntegerField(help_text="Of those, SUCCESS."),
        "failed": serializers.IntegerField(help_text="Of those, FAILURE or TIMEOUT."),
        "gpu_seconds": serializers.FloatField(
            help_text="The sum of their GPU seconds: each job's share of the run that ended it."
        ),
    }


USAGE_SCHEMA = inline_serializer(
    "Usage",
    {
        "user": serializers.CharField(help_text="Whose jobs: a username."),
        "from": serializers.DateField(),
        "to": serializers.DateField(),
        **_figures(),
        "by_task_type": inline_serializer(
            "UsageByTaskType", {"task_type": serializers.CharField(), **_figures()}, many=True
        ),
        "by_day": inline_serializer(
            "UsageByDay",
            {"date": serializers.DateField(help_text="Every day of the range, in order."), **_figures()},
            many=True,
        ),
    },
)
USAGE_EXAMPLE = OpenApiExample(
    "a week",
    value={
        "user": "alice",
        "from": "2026-11-23",
        "to": "2026-11-24",
        "jobs": 42,
        "succeeded": 40,
        "failed": 1,
        "gpu_seconds": 118.25,
        "by_task_type": [
            {"task_type": "image_creation", "jobs": 40, "succeeded": 39, "failed": 1, "gpu_seconds": 96.5},
            {"task_type": "video_creation", "jobs": 2, "succeeded": 1, "failed": 0, "gpu_seconds": 21.75},
        ],
        "by_day": [
            {"date": "2026-11-23", "jobs": 30, "succeeded": 29, "failed": 1, "gpu_seconds": 80.0},
            {"date": "2026-11-24", "jobs": 12, "succeeded": 11, "failed": 0, "gpu_seconds": 38.25},
        ],
    },
    response_only=True,
)


def _date_parameter(name: str, meaning: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        OpenApiTypes.DATE,
        description=f"{meaning}, a UTC day as YYYY-MM-DD. An empty or malformed value is a 400 naming `{name}`.",
        required=False,
    )


def _requested_date(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        message = f"Must be a date as YYYY-MM-DD, got {raw!r}."
        raise InvalidInput(f"{name}: {message}", fields={name: [message]}) from None


def _refused(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", fields={name: [message]})


def requested_range(request: Request) -> tuple[date, date]:
    """`from` and `to`, both included: by default the 30 days up to today."""
    last_day = _requested_date(request, "to") or timezone.localdate()
    first_day = _requested_date(request, "from") or last_day - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first_day > last_day:
        raise _refused("from", f"Must be on or before to ({last_day.isoformat()}).")
    if (last_day - first_day).days + 1 > MAX_RANGE_DAYS:
        raise _refused("from", f"A range covers at most {MAX_RANGE_DAYS} days.")
    try:
        days_bounds(first_day, last_day)
    except OverflowError:
        raise _refused("to", "Out of range.") from None
    return first_day, last_day


def requested_user(request: Request) -> User:
    """The caller, or the user `user=` names when the caller may see others' usage."""
    raw = request.query_params.get("user")
    if raw is None:
        return request.user
    if not raw.strip():
        raise _refused("user", "Must be a username; leave it out for your own usage.")
    if raw == request.user.get_username():
        return request.user
    found = User.objects.filter(username=raw).first() if has_admin_access(request) else None
    if found is None:
        raise NotFound(f"User {raw} not found.")
    return found


class UsageView(APIView):
    @extend_schema(
        summary="Your jobs and GPU seconds over a range of days",
        description=(
            "The jobs that ended from `from` to `to` (UTC days, both included; by default the last 30 days, "
            f"at most {MAX_RANGE_DAYS}), by the day they ended: in all, per task type and per day. "
            "`gpu_seconds` is each job's share of the run that ended it (jobs batched in one pipeline call "
            "share its time; a job that never ran counts 0). A day's figures are fixed once it has been over "
            "for an hour and the sweep has summed it up: deleting or retrying its jobs later does not change it. "
            "Staff with the admin scope may name any user "
            "with `user=`; anyone else naming another user gets a 404, as for a user that does not exist."
        ),
        parameters=[
            _date_parameter("from", "The first day"),
            _date_parameter("to", "The last day, included"),
            OpenApiParameter(
                "user",
                str,
                description="Staff: whose usage (a username). Your own username works for anyone; "
                "another user's is a 404 unless you are staff. An empty value is a 400 naming `user`.",
                required=False,
            ),
        ],
        examples=[USAGE_EXAMPLE],
        responses={200: USAGE_SCHEMA, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        first_day, last_day = requested_range(request)
        user = requested_user(request)
        usage = usage_of(owner_id=user.pk, first_day=first_day, last_day=last_day)
        return Response({"user": user.get_username(), **usage.as_dict()})
