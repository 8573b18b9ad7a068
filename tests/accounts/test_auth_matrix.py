"""The auth matrix: every API route against every kind of caller.

Callers: anonymous; the owner with a read-only, a write-only and a read+write token;
another user; staff with an admin token (sees and acts on everyone's jobs) and staff
without the admin scope (an ordinary user then); a GPU server with its server key.
Each cell names the status the route must answer; a user's 403 also names the missing
scope in the error body.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from generation.services import upload_create
from servers.services import server_register
from tasks import services
from tasks.models import Task

pytestmark = pytest.mark.django_db

SUBMIT = {"task_type": "image_creation", "params": {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2}}
SERVER = {"name": "gpu-new", "endpoints": {"predict": "http://gpu.example/predict"}, "capabilities": ["image_creation"]}

# route: (method, path, body); {task}, {token}... are the owner's objects, {server} a
# server registered by staff.
ROUTES: dict[str, tuple[str, str, Any]] = {
    "GET /tasks": ("get", "/api/v1/tasks", None),
    "POST /tasks": ("post", "/api/v1/tasks", SUBMIT),
    "GET /tasks/{id}": ("get", "/api/v1/tasks/{task}", None),
    "DELETE /tasks/{id}": ("delete", "/api/v1/tasks/{task}", None),
    "PUT /tasks/{id}": ("put", "/api/v1/tasks/{task}", {"state": "STARTED"}),
    "POST /tasks/{id}/cancel": ("post", "/api/v1/tasks/{task}/cancel", None),
    "POST /tasks/{id}/retry": ("post", "/api/v1/tasks/{revoked_task}/retry", None),
    "GET /tokens": ("get", "/api/v1/tokens", None),
    "POST /tokens": ("post", "/api/v1/tokens", {"name": "ci", "scopes": ["write"]}),
    "DELETE /tokens/{id}": ("delete", "/api/v1/tokens/{token}", None),
    "GET /uploads": ("get", "/api/v1/uploads", None),
    "POST /uploads": ("post", "/api/v1/uploads", "png"),
    "GET /uploads/{id}": ("get", "/api/v1/uploads/{upload}", None),
    "DELETE /uploads/{id}": ("delete", "/api/v1/uploads/{upload}", None),
    "GET /servers": ("get", "/api/v1/servers", None),
    "POST /servers": ("post", "/api/v1/servers", SERVER),
    "GET /servers/{id}": ("get", "/api/v1/servers/{server}", None),
    "POST /servers/{id}/heartbeat": ("post", "/api/v1/servers/{server}/heartbeat", {"status": "online"}),
    "GET /stats/tasks": ("get", "/api/v1/stats/tasks", None),
    "GET /stats/load-balancer": ("get", "/api/v1/stats/load-balancer", None),
}

CALLERS = {
    "anonymous": (None, ()),
    "read": ("owner", ("read",)),
    "write": ("owner", ("write",)),
    "read+write": ("owner", ("read", "write")),
    "other user": ("other_user", ("read", "write")),
    "staff admin": ("staff", ("read", "write", "admin")),
    "staff no admin": ("staff", ("read", "write")),
    "server key": ("server", ()),
}

# The auth matrix as the tests check it: the status each caller gets on each route.
MATRIX: dict[str, tuple[int, ...]] = {
    #                               anon read write r+w other staff-adm staff-no srv
    "GET /tasks": (401, 200, 403, 200, 200, 200, 200, 401),
    "POST /tasks": (401, 403, 202, 202, 202, 202, 202, 401),
    "GET /tasks/{id}": (401, 200, 403, 200, 404, 200, 404, 403),
    "DELETE /tasks/{id}": (401, 403, 200, 200, 404, 200, 404, 403),
    "PUT /tasks/{id}": (401, 403, 403, 403, 403, 403, 403, 404),
    "POST /tasks/{id}/cancel": (401, 403, 200, 200, 404, 200, 404, 401),
    "POST /tasks/{id}/retry": (401, 403, 202, 202, 404, 202, 404, 401),
    "GET /tokens": (401, 200, 403, 200, 200, 200, 200, 401),
    "POST /tokens": (401, 403, 201, 201, 201, 201, 201, 401),
    "DELETE /tokens/{id}": (401, 403, 200, 200, 404, 404, 404, 401),
    "GET /uploads": (401, 200, 403, 200, 200, 200, 200, 401),
    "POST /uploads": (401, 403, 201, 201, 201, 201, 201, 401),
    "GET /uploads/{id}": (401, 200, 403, 200, 404, 404, 404, 401),
    "DELETE /uploads/{id}": (401, 403, 204, 204, 404, 404, 404, 401),
    "GET /servers": (401, 403, 403, 403, 403, 200, 403, 403),
    "POST /servers": (401, 403, 403, 403, 403, 201, 403, 403),
    "GET /servers/{id}": (401, 403, 403, 403, 403, 200, 403, 403),
    "POST /servers/{id}/heartbeat": (401, 401, 401, 401, 401, 401, 401, 200),
    "GET /stats/tasks": (401, 403, 403, 403, 403, 200, 403, 401),
    "GET /stats/load-balancer": (401, 403, 403, 403, 403, 200, 403, 403),
}
assert set(MATRIX) == set(ROUTES)

CELLS = [(caller, route) for caller in CALLERS for route in ROUTES]


def _png() -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="PNG")
    return SimpleUploadedFile("red.png", buffer.getvalue(), content_type="image/png")


@pytest.fixture
def owned(owner: User, staff: User) -> dict[str, str]:
    task = services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])
    revoked = services.task_cancel(
        task=services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])
    )
    token = api_token_create(user=owner, name="owner's other token").token
    upload = upload_create(owner=owner, file=_png())
    server = server_register(name="gpu-a", capabilities=["image_creation"], predict_url="http://a.example/p")
    return {
        "task": str(task.pk),
        "revoked_task": str(revoked.pk),
        "token": str(token.pk),
        "upload": str(upload.pk),
        "server": str(server.server.pk),
        "server_key": server.key,
    }


@pytest.mark.parametrize(("caller", "route"), CELLS, ids=[f"{caller}-{route}" for caller, route in CELLS])
def test_auth_matrix(request: pytest.FixtureRequest, owned: dict[str, str], caller: str, route: str) -> None:
    who, scopes = CALLERS[caller]
    client = APIClient()
    if who == "server":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {owned['server_key']}")
    elif who:
        user = request.getfixturevalue(who)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, scopes=scopes).secret}")
    method, path, body = ROUTES[route]
    expected = MATRIX[route][list(CALLERS).index(caller)]

    if body == "png":
        response = client.post(path.format(**owned), {"file": _png()}, format="multipart")
    else:
        response = getattr(client, method)(path.format(**owned), body, format="json")

    assert response.status_code == expected, response.content
    if expected == 403 and who not in (None, "server") and method != "put":
        staff_only = "/servers" in path or "/stats" in path
        needed = "admin" if staff_only else ("read" if method == "get" else "write")
        assert response.json()["code"] == "insufficient_scope"
        assert f"'{needed}' scope" in response.json()["detail"]


def test_other_users_see_none_of_the_owners_jobs_or_tokens(owned: dict[str, str], other_client: APIClient) -> None:
    assert other_client.get("/api/v1/tasks").json()["results"] == []
    prefixes = [token["prefix"] for token in other_client.get("/api/v1/tokens").json()["results"]]
    assert ApiToken.objects.get(pk=owned["token"]).prefix not in prefixes


def test_staff_with_the_admin_scope_see_every_users_jobs(
    owned: dict[str, str], staff_client: APIClient, client_with_scopes: Any, staff: User
) -> None:
    listed = {task["task_id"] for task in staff_client.get("/api/v1/tasks").json()["results"]}
    assert {owned["task"], owned["revoked_task"]} <= listed

    without_admin = client_with_scopes(staff, "read", "write")
    assert without_admin.get("/api/v1/tasks").json()["results"] == []


def test_staff_admin_acts_on_another_users_job(owned: dict[str, str], staff_client: APIClient) -> None:
    response = staff_client.post(f"/api/v1/tasks/{owned['task']}/cancel")
    assert response.status_code == 200
    assert Task.objects.get(pk=owned["task"]).state == "REVOKED"


@pytest.mark.urls("tests.probe_urls")
@pytest.mark.parametrize(
    ("who", "scopes", "get_status", "post_status", "message"),
    [
        ("owner", ("read", "write"), 403, 403, "only staff users can hold"),
        ("staff", ("read", "write"), 403, 403, "needs a token with the 'admin' scope"),
        ("staff", ("admin",), 200, 201, None),
        ("staff", ("read", "write", "admin"), 200, 201, None),
    ],
)
def test_staff_routes_need_the_admin_scope_and_a_staff_user(
    request: pytest.FixtureRequest,
    client_with_scopes: Any,
    who: str,
    scopes: tuple[str, ...],
    get_status: int,
    post_status: int,
    message: str | None,
) -> None:
    client = client_with_scopes(request.getfixturevalue(who), *scopes)
    response = client.get("/probe/staff")
    assert response.status_code == get_status
    assert client.post("/probe/staff").status_code == post_status
    if message:
        assert response.json()["code"] == "insufficient_scope"
        assert message in response.json()["detail"]


@pytest.mark.urls("tests.probe_urls")
def test_a_user_demoted_from_staff_loses_the_admin_scope(
    owned: dict[str, str], staff: User, staff_client: APIClient
) -> None:
    assert staff_client.get("/probe/staff").status_code == 200
    User.objects.filter(pk=staff.pk).update(is_staff=False, is_superuser=False)
    assert staff_client.get("/probe/staff").status_code == 403
    assert staff_client.get(f"/api/v1/tasks/{owned['task']}").status_code == 404


@pytest.mark.urls("tests.probe_urls")
def test_staff_routes_refuse_anonymous_requests(anonymous_client: APIClient) -> None:
    assert anonymous_client.get("/probe/staff").status_code == 401
    assert anonymous_client.post("/probe/staff").status_code == 401
