"""The operator's view of the GPU fleet. Actions call the same services as the API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from servers.models import LoadBalancer, Server, ServerStatus
from servers.selectors import server_task_counts
from servers.services import load_balancer_set_algorithm, server_set_maintenance, server_unregister

_BADGE_COLOURS = {
    ServerStatus.ONLINE: "#2e7d32",
    ServerStatus.DEGRADED: "#ef6c00",
    ServerStatus.MAINTENANCE: "#1565c0",
    ServerStatus.OFFLINE: "#757575",
}


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status_badge", "heartbeat_age", "load", "priority", "capability_list")
    list_filter = ("kind", "status", "maintenance")
    search_fields = ("name", "queue_name")
    readonly_fields = [field.name for field in Server._meta.fields if field.name != "key_hash"]
    exclude = ("key_hash",)
    actions = ["start_maintenance", "end_maintenance", "unregister"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Servers register through the API (which shows the key once) or by themselves.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Server | None = None) -> bool:
        # Deleting must release the server's jobs first: the "unregister" action does.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Server]:
        queryset = super().get_queryset(request)
        self._counts = server_task_counts(queryset.values_list("pk", flat=True))
        return queryset

    @admin.display(description="status")
    def status_badge(self, server: Server) -> str:
        status = server.display_status
        reason = f" ({server.maintenance_reason})" if server.maintenance and server.maintenance_reason else ""
        return format_html(
            '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>{}',
            _BADGE_COLOURS.get(status, "#757575"),
            status,
            reason,
        )

    @admin.display(description="last heartbeat")
    def heartbeat_age(self, server: Server) -> str:
        if server.last_heartbeat_at is None:
            return "never"
        return f"{(timezone.now() - server.last_heartbeat_at).total_seconds():.0f} s ago"

    @admin.display(description="load (active / max)")
    def load(self, server: Server) -> str:
        counts = getattr(self, "_counts", {}).get(server.pk, {"active": 0, "queued": 0})
        return f"{counts['active']} / {server.max_concurrent} (+{counts['queued']} queued)"

    @admin.display(description="capabilities")
    def capability_list(self, server: Server) -> str:
        return ", ".join(server.capabilities)

    @admin.action(description="Start maintenance (no new jobs; running ones finish)")
    def start_maintenance(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        for server in queryset:
            server_set_maintenance(server=server, maintenance=True, reason=f"set by {request.user} in the admin")
        self.message_user(request, f"{queryset.count()} server(s) in maintenance.")

    @admin.action(description="End maintenance")
    def end_maintenance(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        for server in queryset:
            server_set_maintenance(server=server, maintenance=False)
        self.message_user(request, f"{queryset.count()} server(s) back in service.")

    @admin.action(description="Unregister (its jobs go to other servers)")
    def unregister(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        count = 0
        for server in list(queryset):
            server_unregister(server=server)
            count += 1
        self.message_user(request, f"{count} server(s) unregistered.", messages.WARNING)


@admin.register(LoadBalancer)
class LoadBalancerAdmin(admin.ModelAdmin):
    list_display = ("algorithm", "updated_at")
    fields = ("algorithm", "updated_at")
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LoadBalancer | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LoadBalancer, form: Any, change: bool) -> None:
        # Through the service: it takes the routing lock, so no decision sees half a change.
        load_balancer_set_algorithm(algorithm=obj.algorithm)
