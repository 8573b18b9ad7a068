from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import ApiToken, User
from accounts.services import api_token_revoke

_TOKEN_FIELDS = ("prefix", "name", "user", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    can_delete = False
    fields = _TOKEN_FIELDS
    readonly_fields = _TOKEN_FIELDS
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(User)
class BackservUserAdmin(UserAdmin):
    fieldsets = (*UserAdmin.fieldsets, ("Quota", {"fields": ("max_unfinished_tasks",)}))
    list_display = (*UserAdmin.list_display, "max_unfinished_tasks")
    inlines = [ApiTokenInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are listed and revoked here, never shown: only a hash is stored."""

    list_display = _TOKEN_FIELDS
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("prefix", "name", "user__username")
    fields = _TOKEN_FIELDS
    readonly_fields = _TOKEN_FIELDS
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Secrets are shown once at creation: issue them with create_api_token or the API.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)
