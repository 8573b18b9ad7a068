"""The event streams are served beside DRF (raw ASGI), so they check tokens themselves:
revoked, expired and read-less tokens are refused like missing ones."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx2
import pytest
import websockets
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from websockets.asyncio.client import connect

from accounts.models import ApiToken, User
from accounts.services import api_token_create, api_token_revoke
from tasks import services
from tests.client.conftest import LiveServer, bearer


def _spoiled_token(owner: User, how: str) -> str:
    if how == "write-only":
        return api_token_create(user=owner, scopes=["write"]).secret
    issued = api_token_create(user=owner)
    if how == "revoked":
        api_token_revoke(token=issued.token)
    else:
        ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return issued.secret


@pytest.fixture
def task_id(owner: User, broker: StubBroker) -> str:
    params = {"prompt": "a beautiful sunset", "width": 64, "height": 64, "steps": 4}
    return str(services.task_submit(owner=owner, task_type="image_creation", params=params).pk)


@pytest.mark.parametrize("how", ["revoked", "expired", "write-only"])
def test_sse_refuses_revoked_expired_and_read_less_tokens(
    asgi_server: LiveServer, owner: User, task_id: str, how: str
) -> None:
    token = _spoiled_token(owner, how)
    for headers, query in ((bearer(token), ""), ({}, f"?token={token}")):
        response = httpx2.get(f"{asgi_server.url}/api/v1/tasks/{task_id}/events{query}", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


def test_sse_serves_a_read_only_token(asgi_server: LiveServer, owner: User, task_id: str) -> None:
    token = api_token_create(user=owner, scopes=["read"]).secret

    async def first_bytes() -> tuple[int, bytes]:
        async with httpx2.AsyncClient(timeout=10) as http:
            url = f"{asgi_server.url}/api/v1/tasks/{task_id}/events"
            async with http.stream("GET", url, headers=bearer(token)) as response:
                async for chunk in response.aiter_bytes():
                    return response.status_code, chunk
        return 0, b""

    status, chunk = asyncio.run(first_bytes())
    assert status == 200 and b"event: submitted" in chunk


@pytest.mark.parametrize("path", ["tasks/{task_id}", "generation"])
@pytest.mark.parametrize("how", ["revoked", "expired", "write-only"])
def test_websockets_refuse_revoked_expired_and_read_less_tokens(
    asgi_server: LiveServer, owner: User, task_id: str, path: str, how: str
) -> None:
    token = _spoiled_token(owner, how)

    async def close_code() -> Any:
        async with connect(f"{asgi_server.ws_url}/ws/{path.format(task_id=task_id)}?token={token}") as socket:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(close_code()) == 4401
