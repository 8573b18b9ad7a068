from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_dramatiq.models import Task as DramatiqMessage

from tasks.models import Task, TaskEvent, WebhookAttempt, WebhookDelivery
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

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "task_type", "state", "progress", "owner", "priority", "attempts", "submitted_at")
    list_filter = ("state", "task_type")
    search_fields = ("id", "user_label", "owner__username")
    readonly_fields = [field.name for field in Task._meta.fields]
    inlines = [TaskEventInline]

    def has_add_permission(self, request: object) -> bool:
        # Jobs enter through the API's submit service, never as bare rows.
        return False


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
