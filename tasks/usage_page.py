"""The admin's usage page (staff): users by the GPU seconds of their jobs that ended in a
range of days, with their jobs, successes and failures, each linking to the user's jobs."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from tasks.usage import MAX_RANGE_DAYS, days_bounds, usage_by_user

DEFAULT_RANGE_DAYS = 30


class UsageRangeForm(forms.Form):
    # Python keywords, so declared by name below.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from"] = forms.DateField(required=False, label="From", help_text="YYYY-MM-DD (UTC)")
        self.fields["to"] = forms.DateField(required=False, label="To", help_text="YYYY-MM-DD, included")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        last_day = cleaned.get("to") or timezone.localdate()
        first_day = cleaned.get("from") or last_day - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if first_day > last_day:
            self.add_error("from", "Must be on or before To.")
        elif (last_day - first_day).days + 1 > MAX_RANGE_DAYS:
            self.add_error("from", f"A range covers at most {MAX_RANGE_DAYS} days.")
        elif last_day >= date.max:
            self.add_error("to", "Out of range.")
        cleaned["range"] = (first_day, last_day)
        return cleaned


def usage_view(request: HttpRequest) -> HttpResponse:
    form = UsageRangeForm(request.GET or None)
    today = timezone.localdate()
    first_day, last_day = today - timedelta(days=DEFAULT_RANGE_DAYS - 1), today
    if form.is_bound and form.is_valid():
        first_day, last_day = form.cleaned_data["range"]
    start, end = days_bounds(first_day, last_day)
    rows = usage_by_user(first_day=first_day, last_day=last_day)
    for row in rows:
        # The user's jobs the row counts, in the jobs' list.
        row["jobs_query"] = urlencode(
            {
                "owner__id__exact": row["owner_id"],
                "completed_at__gte": start.isoformat(),
                "completed_at__lt": end.isoformat(),
            }
        )
    context = {
        **admin.site.each_context(request),
        "title": "GPU usage by user",
        "form": form,
        "first_day": first_day,
        "last_day": last_day,
        "rows": rows,
    }
    return TemplateResponse(request, "admin/tasks/usage.html", context)
