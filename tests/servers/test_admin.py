"""The servers admin: staff see the fleet and act on it through the services."""

from __future__ import annotations

from django.test import Client

from accounts.models import User
from servers.models import Algorithm, LoadBalancer, Server
from servers.selectors import load_balancer_status
from servers.services import load_balancer_set_algorithm, server_register


def _logged_in(staff: User) -> Client:
    browser = Client()
    browser.force_login(staff)
    return browser


def _server(name: str) -> Server:
    return server_register(
        name=name, kind="worker", capabilities=["image_creation"], groups=[], priority=1, max_concurrent=2
    ).server


def test_the_server_list_shows_status_heartbeat_and_load(staff: User) -> None:
    _server("gpu-a")
    page = _logged_in(staff).get("/admin/servers/server/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "gpu-a" in html and "online" in html and "0 / 2" in html


def test_maintenance_actions_go_through_the_service(staff: User) -> None:
    server = _server("gpu-b")
    browser = _logged_in(staff)
    response = browser.post(
        "/admin/servers/server/", {"action": "start_maintenance", "_selected_action": [str(server.pk)]}
    )
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.maintenance and "admin" in server.maintenance_reason
    browser.post("/admin/servers/server/", {"action": "end_maintenance", "_selected_action": [str(server.pk)]})
    server.refresh_from_db()
    assert not server.maintenance and server.maintenance_reason == ""


def test_the_algorithm_is_changed_in_the_admin_and_seen_by_the_api(staff: User) -> None:
    load_balancer_set_algorithm(algorithm=Algorithm.ROUND_ROBIN)
    balancer = LoadBalancer.objects.get()
    response = _logged_in(staff).post(
        f"/admin/servers/loadbalancer/{balancer.pk}/change/", {"algorithm": Algorithm.LEAST_CONNECTIONS}
    )
    assert response.status_code == 302
    assert load_balancer_status()["algorithm"] == Algorithm.LEAST_CONNECTIONS


def test_a_regular_user_cannot_open_the_servers_admin(owner: User) -> None:
    response = _logged_in(owner).get("/admin/servers/server/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
