"""The caller's own API tokens: list, create (the secret is in that one response),
revoke. Another user's token is simply not found."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import ApiTokenCreateSerializer, ApiTokenSerializer
from accounts.models import DEFAULT_SCOPES, ApiToken
from accounts.permissions import request_scopes
from accounts.services import api_token_create, api_token_revoke, scopes_clean
from tasks.errors import InvalidInput, NotFound


class ApiTokenListCreateView(generics.ListAPIView):
    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user=self.request.user)

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
    def delete(self, request: Request, token_id: int) -> Response:
        token = ApiToken.objects.filter(user=request.user, pk=token_id).first()
        if token is None:
            raise NotFound(f"Token {token_id} not found.")
        api_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
