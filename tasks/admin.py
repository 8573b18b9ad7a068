"""The operator console for jobs. Actions call the same services as the API, so the
console and the API cannot disagree about what a cancel or a retry means."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_dramatiq.models import Task as DramatiqMessage

from backserv_site.errors import StateConflict
from backserv_site.media import media_url
from tasks import selectors, services
from tasks.charts import STATE_COLORS
from tasks.models import Task, TaskEvent, TaskState, WebhookAttempt, WebhookDelivery
from tasks.usage_page import usage_view
from tasks.webhooks import webhook_redeliver

# django_dramatiq's message log is not used (its middleware is not installed); its empty
# admin page would only be confused with the jobs.
if admin.site.is_registered(DramatiqMessage):
    admin.site.unregister(DramatiqMessage)


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "type", "state", "data")
    fields = readonly_fields
    verbose_name_plural = "Event timeline"

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


def _run_action(
    admin_model: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task], verb: str, action: Callable
) -> None:
    done, refused = 0, []
    for task in queryset:
        try:
            action(task=task)
            done += 1
        except StateConflict as error:
            refused.append(f"{task.pk}: {error.message}")
    if done:
        admin_model.message_user(request, f"{verb} {done} task(s).", messages.SUCCESS)
    for reason in refused:
        admin_model.message_user(request, reason, messages.WARNING)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "task_type",
        "state_badge",
        "progress_percent",
        "owner",
        "user_label",
        "priority",
        "attempts_used",
        "duration",
        "server",
        "submitted_at",
    )
    list_filter = (
        "state",
        "task_type",
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("server", admin.RelatedOnlyFieldListFilter),
        "submitted_at",
    )
    date_hierarchy = "submitted_at"
    search_fields = ("=id", "user_label", "params__prompt", "owner__username")
    list_select_related = ("owner", "server")
    actions = ("cancel_tasks", "retry_tasks", "requeue_tasks", "delete_tasks_with_files")
    inlines = [TaskEventInline]
    fieldsets = (
        (None, {"fields": ("id", "task_type", "state_badge", "progress_percent", "owner", "user_label", "priority")}),
        ("Params", {"fields": ("params_pretty",)}),
        ("Result", {"fields": ("result_preview", "result_pretty", "error_code", "error_message")}),
        ("Attempts", {"fields": ("attempts_used", "attempts_table", "worker", "cancel_requested")}),
        ("Routing", {"fields": ("server", "group", "queue_name", "wait_reason")}),
        ("Webhook", {"fields": ("webhook", "webhook_events", "idempotency_key")}),
        (
            "Times",
            {
                "fields": (
                    "submitted_at",
                    "queued_at",
                    "queue_deadline",
                    "run_after",
                    "claimed_at",
                    "started_at",
                    "completed_at",
                    "lease_expires_at",
                    "duration",
                )
            },
        ),
        ("Usage and retention", {"fields": ("queue_seconds", "gpu_seconds", "result_expired_at")}),
    )
    readonly_fields = (
        *(field.name for field in Task._meta.fields),
        "state_badge",
        "progress_percent",
        "attempts_used",
        "duration",
        "params_pretty",
        "result_pretty",
        "result_preview",
        "attempts_table",
    )

    def has_add_permission(self, request: object) -> bool:
        # Jobs enter through the API's submit service, never as bare rows.
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The stock bulk delete skips the service (running jobs, files on disk).
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        usage = path("usage/", self.admin_site.admin_view(usage_view), name="tasks_usage")
        return [usage, *super().get_urls()]

    # Columns ------------------------------------------------------------------------

    @admin.display(description="id")
    def short_id(self, task: Task) -> str:
        return str(task.pk)[:8]

    @admin.display(description="state", ordering="state")
    def state_badge(self, task: Task) -> SafeString:
        return format_html(
            '<span class="state-badge" style="background:{};color:#fff;padding:2px 6px;border-radius:4px">{}</span>',
            STATE_COLORS[TaskState(task.state)],
            task.state,
        )

    @admin.display(description="progress", ordering="progress")
    def progress_percent(self, task: Task) -> SafeString:
        return format_html('<progress max="100" value="{0}"></progress> {0}%', round(task.progress * 100))

    @admin.display(description="attempts")
    def attempts_used(self, task: Task) -> str:
        return f"{task.attempts}/{task.max_attempts}"

    @admin.display(description="duration")
    def duration(self, task: Task) -> str:
        if task.started_at is None:
            return "-"
        seconds = ((task.completed_at or timezone.now()) - task.started_at).total_seconds()
        return f"{seconds:.1f} s" + ("" if task.completed_at else " (running)")

    # Detail -------------------------------------------------------------------------

    @admin.display(description="params")
    def params_pretty(self, task: Task) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(task.params, indent=2, sort_keys=True))

    @admin.display(description="result")
    def result_pretty(self, task: Task) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(task.result, indent=2, sort_keys=True)) if task.result else "-"

    @admin.display(description="preview")
    def result_preview(self, task: Task) -> SafeString | str:
        outputs = (task.result or {}).get("outputs", [])
        if not outputs:
            return "-"
        return format_html_join(" ", "{}", ((_preview(item),) for item in outputs))

    @admin.display(description="attempts history")
    def attempts_table(self, task: Task) -> SafeString | str:
        attempts = selectors.task_attempts_history(task=task)
        if not attempts:
            return "No attempt yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    attempt["attempt"],
                    attempt["worker"],
                    _when(attempt["claimed_at"]),
                    _when(attempt["started_at"]),
                    _when(attempt["ended_at"]),
                    attempt["outcome"],
                    _error_text(attempt["error"]),
                )
                for attempt in attempts
            ),
        )
        return format_html(
            '<table class="attempts"><thead><tr><th>#</th><th>worker</th><th>claimed</th><th>started</th>'
            "<th>ended</th><th>outcome</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    # Actions ------------------------------------------------------------------------

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _run_action(self, request, queryset, "Cancelled", services.task_cancel)

    @admin.action(description="Retry selected tasks (finished ones)")
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _run_action(self, request, queryset, "Retried", services.task_retry)

    @admin.action(description="Requeue selected tasks (force stuck ones back to PENDING)")
    def requeue_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _run_action(self, request, queryset, "Requeued", services.task_requeue)

    @admin.action(description="Delete selected tasks and their files")
    def delete_tasks_with_files(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _run_action(self, request, queryset, "Deleted", services.task_delete)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("number", "created_at", "status_code", "duration_ms", "error")
    fields = readonly_fields

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "event", "state", "attempts", "next_attempt_at", "created_at")
    list_filter = ("state", "event")
    search_fields = ("id", "task__id", "url")
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request: object) -> bool:
        return False

    @admin.action(description="Send the selected webhooks again")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            webhook_redeliver(delivery=delivery)
        self.message_user(request, f"{len(queryset)} webhook delivery(ies) queued again.")


def _preview(item: dict[str, Any]) -> SafeString:
    # Signed afresh, as the API does: the stored URL carries no signature and the
    # media view refuses it.
    url = media_url(item["path"]) if item.get("path") else item.get("url", "")
    content_type = item.get("content_type", "")
    if content_type.startswith("video/"):
        return format_html('<video src="{}" controls width="256" preload="metadata"></video>', url)
    if content_type.startswith("image/"):
        return format_html('<a href="{0}"><img src="{0}" alt="output" style="max-width:256px"></a>', url)
    return format_html('<a href="{}">{}</a>', url, content_type or "file")


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _error_text(error: dict[str, str] | None) -> str:
    if not error:
        return ""
    return f"{error['code']}: {error['message']}" if error["code"] else error["message"]
