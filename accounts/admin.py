from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiToken, User

admin.site.register(User, UserAdmin)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at")
    search_fields = ("prefix", "name", "user__username")
    readonly_fields = ("prefix", "created_at")
    exclude = ("key_hash",)

    def has_add_permission(self, request: object) -> bool:
        # Secrets are shown once at creation: issue them with create_api_token or the API.
        return False
