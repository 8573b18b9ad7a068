from __future__ import annotations

from rest_framework import serializers

from accounts.models import ApiToken, Scope
from backserv_site.serializers import JsonStringField, StrictSerializer


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as listed: never its secret (it is not stored)."""

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The secret, shown in this response only.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictSerializer):
    name = JsonStringField(max_length=100, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.values),
        required=False,
        allow_empty=False,
        max_length=len(Scope.values),
    )
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=3650)
