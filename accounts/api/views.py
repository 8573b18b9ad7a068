"""The caller's own API tokens: list, create (the secret is in that one response),
revoke. Another user's token is simply not found."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import ApiTokenCreatedSerializer, ApiTokenCreateSerializer, ApiTokenSerializer
from accounts.models import DEFAULT_SCOPES, ApiToken
from accounts.permissions import request_scopes
from accounts.services import api_token_create, api_token_revoke, scopes_clean
from backserv_site.errors import InvalidInput, NotFound
from backserv_site.schema import errors

TOKEN_EXAMPLE = {
    "id": 7,
    "name": "ci",
    "prefix": "3f9a0c1d",
    "scopes": ["read", "write"],
    "created_at": "2026-01-01T12:00:00Z",
    "expires_at": "2026-04-01T12:00:00Z",
    "last_used_at": "2026-01-02T08:30:00Z",
    "revoked_at": None,
}


@extend_schema_view(
    get=extend_schema(
        summary="List your API tokens",
        description="Never their secrets: only a hash is stored.",
        responses={200: ApiTokenSerializer(many=True), **errors(400, 401, 403)},
        examples=[OpenApiExample("your tokens", value=[TOKEN_EXAMPLE], response_only=True)],
    ),
)
class ApiTokenListCreateView(generics.ListAPIView):
    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()  # schema generation: no user
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(
        summary="Create an API token",
        description="The secret is in this response only. A token can only grant scopes it holds itself; "
        "`admin` is for staff users.",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer, **errors(400, 401, 403)},
        examples=[
            OpenApiExample(
                "a read-only token for 90 days",
                value={"name": "dashboard", "scopes": ["read"], "expires_in_days": 90},
                request_only=True,
            ),
            OpenApiExample(
                "created",
                value={**TOKEN_EXAMPLE, "token": "bs_3f9a0c1d_Vb1…"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        form = ApiTokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        scopes = scopes_clean(user=request.user, scopes=form.validated_data.get("scopes", DEFAULT_SCOPES))
        # A token cannot mint a stronger one: a leaked read token must stay a read token.
        beyond = sorted(set(scopes) - request_scopes(request))
        if beyond:
            message = f"This request cannot grant the '{beyond[0]}' scope, which it does not hold itself."
            raise InvalidInput(message, fields={"scopes": [message]})
        days = form.validated_data.get("expires_in_days")
        issued = api_token_create(
            user=request.user,
            name=form.validated_data["name"],
            scopes=scopes,
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        body = {**ApiTokenSerializer(issued.token).data, "token": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiTokenDetailView(APIView):
    @extend_schema(
        summary="Revoke one of your API tokens",
        description="It stops working at once; revoking it again changes nothing.",
        responses={200: ApiTokenSerializer, **errors(401, 403, 404)},
        examples=[
            OpenApiExample("revoked", value={**TOKEN_EXAMPLE, "revoked_at": "2026-01-03T09:00:00Z"}, response_only=True)
        ],
    )
    def delete(self, request: Request, token_id: int) -> Response:
        token = ApiToken.objects.filter(user=request.user, pk=token_id).first()
        if token is None:
            raise NotFound(f"Token {token_id} not found.")
        return Response(ApiTokenSerializer(api_token_revoke(token=token)).data)
