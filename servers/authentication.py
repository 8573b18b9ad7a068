from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.services import token_hash_check
from servers.keys import server_key_lookup
from servers.models import Server
from servers.services import server_key_rehash


class ServerKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer bsk_...`: the request comes from a registered server. It is
    never a user: request.user stays anonymous, so a server key cannot read anyone's jobs;
    request.auth is the Server."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, Server] | None:
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() not in (b"bearer", b"token"):
            return None
        try:
            raw = header[1].decode()
        except UnicodeDecodeError:
            return None
        lookup = server_key_lookup(raw)
        if lookup is None:
            return None
        server = Server.objects.filter(key_prefix=lookup).first()
        current_hash = token_hash_check(raw=raw, key_hash=server.key_hash if server else None)
        if current_hash is None or server is None:
            raise exceptions.AuthenticationFailed("Invalid server key.")
        if current_hash != server.key_hash:
            server_key_rehash(server=server, key_hash=current_hash)
        return AnonymousUser(), server

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class IsServer(permissions.BasePermission):
    message = "This endpoint takes a server key."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, Server)
