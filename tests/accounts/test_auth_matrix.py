"""The auth matrix: every API route against every kind of caller.

Callers: anonymous; the owner with a read-only, a write-only and a read+write token;
another user; staff with an admin token (sees and acts on everyone's jobs) and staff
without the admin scope (an ordinary user then). Each cell names the status the route
must answer; 403 cells also name the missing scope in the error body.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from tasks import services
from tasks.models import Task

pytestmark = pytest.mark.django_db

SUBMIT = {"task_type": "image_creation", "params": {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2}}

# route: (method, path, body)
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "GET tasks": ("get", "/api/v1/tasks", None),
    "POST tasks": ("post", "/api/v1/tasks", SUBMIT),
    "GET task": ("get", "/api/v1/tasks/{task}", None),
    "DELETE task": ("delete", "/api/v1/tasks/{task}", None),
    "POST cancel": ("post", "/api/v1/tasks/{task}/cancel", None),
    "POST retry": ("post", "/api/v1/tasks/{revoked_task}/retry", None),
    "GET tokens": ("get", "/api/v1/tokens", None),
    "POST tokens": ("post", "/api/v1/tokens", {"name": "ci", "scopes": ["write"]}),
    "DELETE token": ("delete", "/api/v1/tokens/{token}", None),
}

# caller: statuses in ROUTES order; the objects in the paths belong to the owner.
MATRIX: dict[str, tuple[int, ...]] = {
    #                  GET  POST GET  DEL  canc retr GET  POST DEL
    #                  tsks tsks task task el   y    tkns tkns tkn
    "anonymous": (401, 401, 401, 401, 401, 401, 401, 401, 401),
    "owner read": (200, 403, 200, 403, 403, 403, 200, 403, 403),
    "owner write": (403, 202, 403, 200, 200, 202, 403, 201, 200),
    "owner read+write": (200, 202, 200, 200, 200, 202, 200, 201, 200),
    "other user": (200, 202, 404, 404, 404, 404, 200, 201, 404),
    "staff admin": (200, 202, 200, 200, 200, 202, 200, 201, 404),
    "staff no admin": (200, 202, 404, 404, 404, 404, 200, 201, 404),
}

CALLERS = {
    "anonymous": (None, ()),
    "owner read": ("owner", ("read",)),
    "owner write": ("owner", ("write",)),
    "owner read+write": ("owner", ("read", "write")),
    "other user": ("other_user", ("read", "write")),
    "staff admin": ("staff", ("read", "write", "admin")),
    "staff no admin": ("staff", ("read", "write")),
}

CELLS = [(caller, route) for caller in MATRIX for route in ROUTES]


@pytest.fixture
def owned(owner: User) -> dict[str, str]:
    task = services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])
    revoked = services.task_cancel(
        task=services.task_submit(owner=owner, task_type="image_creation", params=SUBMIT["params"])
    )
    token = api_token_create(user=owner, name="owner's other token").token
    return {"task": str(task.pk), "revoked_task": str(revoked.pk), "token": str(token.pk)}


@pytest.mark.parametrize(("caller", "route"), CELLS, ids=[f"{caller}-{route}" for caller, route in CELLS])
def test_auth_matrix(request: pytest.FixtureRequest, owned: dict[str, str], caller: str, route: str) -> None:
    user_fixture, scopes = CALLERS[caller]
    client = APIClient()
    if user_fixture:
        user = request.getfixturevalue(user_fixture)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, scopes=scopes).secret}")
    method, path, body = ROUTES[route]
    expected = MATRIX[caller][list(ROUTES).index(route)]

    response = getattr(client, method)(path.format(**owned), body, format="json")

    assert response.status_code == expected, response.content
    if expected == 403:
        needed = "read" if method == "get" else "write"
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
