"""Every route refuses an anonymous request, except the few that are open on purpose.
The URLconf is walked, not listed: a route added later is checked without anyone
remembering to add it here."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from rest_framework.test import APIClient

# By route name: open on purpose. The API docs may or may not exist yet.
OPEN_ROUTES = {
    "health",
    "health-live",
    "health-ready",
    "metrics",
    # /metrics under the task-manager document's name: the same rule (loopback, staff
    # tokens, the metrics bearer token).
    "dashboard-metrics",
    "schema",
    "api-schema",
    "docs",
    "api-docs",
    "swagger-ui",
    "redoc",
    "api-redoc",
    # The admin's own way in and out.
    "admin:login",
    "admin:logout",
}
METHODS = ("get", "post", "put", "patch", "delete")


def _dummy_values() -> list[str]:
    labels = [config.label for config in apps.get_app_configs()]
    return ["1", str(uuid.uuid4()), "x", *labels]


def _walk(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, URLPattern]]:
    """(regex of the whole route, qualified name, pattern) for every route."""
    for entry in patterns:
        regex = entry.pattern.regex.pattern.lstrip("^")
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace and namespace else entry.namespace or namespace
            yield from _walk(entry.url_patterns, prefix + regex, inner or "")
        else:
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name or ""
            yield prefix + regex, name, entry


def _example_url(regex: str, pattern: URLPattern) -> str | None:
    """A URL this route matches, its path arguments filled with dummy values."""
    groups = re.findall(r"\(\?P<(\w+)>", regex)
    # One shape per group: strip each named group down to a placeholder, then try the
    # dummy values until the whole URL resolves to this very route.
    template = regex
    for name in groups:
        template = _replace_group(template, name)
    template = template.rstrip("$").replace("\\Z", "")
    # An optional character (`/?`, as re_path routes use for a trailing slash): take it.
    template = re.sub(r"(?<!\\)\?", "", template).replace("\\", "")
    for values in itertools.product(_dummy_values(), repeat=len(groups)):
        url = "/" + template.format(**dict(zip(groups, values, strict=True)))
        try:
            match = resolve(url)
        except Resolver404:
            continue
        if match.func is pattern.callback or getattr(match.func, "__wrapped__", None) is pattern.callback:
            return url
        if match.route and match.url_name == pattern.name:
            return url
    return None


def _replace_group(regex: str, name: str) -> str:
    start = regex.index(f"(?P<{name}>")
    depth = 0
    for index in range(start, len(regex)):
        if regex[index] == "(" and regex[index - 1] != "\\":
            depth += 1
        elif regex[index] == ")" and regex[index - 1] != "\\":
            depth -= 1
            if depth == 0:
                return regex[:start] + "{" + name + "}" + regex[index + 1 :]
    raise ValueError(f"unbalanced group {name} in {regex}")


def _protected_routes() -> list[tuple[str, str]]:
    routes = []
    for regex, name, pattern in _walk(get_resolver().url_patterns):
        if name in OPEN_ROUTES:
            continue
        routes.append((name or regex, regex, pattern))
    return routes


ROUTES = _protected_routes()


def test_the_walk_finds_the_routes_it_must_check() -> None:
    names = {name for name, _, _ in ROUTES}
    assert {"task-list", "task-detail", "task-cancel", "task-retry", "token-list", "token-detail", "media"} <= names
    assert any(name.startswith("admin:") for name in names)


def _anonymous_failures(url: str) -> list[str]:
    """The methods (with their status) an anonymous client was not refused on."""
    client = APIClient()
    failures, reached = [], False
    for method in METHODS:
        response = getattr(client, method)(url)
        if response.status_code == 405:
            continue
        reached = True
        refused = response.status_code in (401, 403) or (
            response.status_code == 302 and "/admin/login/" in response["Location"]
        )
        if not refused:
            failures.append(f"{method.upper()} {response.status_code}")
    return failures if reached else ["no method reached the view"]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "regex", "pattern"), ROUTES, ids=[route[0] for route in ROUTES])
def test_every_route_refuses_an_anonymous_request(name: str, regex: str, pattern: URLPattern) -> None:
    url = _example_url(regex, pattern)
    assert url is not None, f"cannot build a URL for route {name} ({regex}); teach _dummy_values its arguments"
    assert _anonymous_failures(url) == [], f"{url} ({name}) answers an anonymous request"


@pytest.mark.django_db
@pytest.mark.urls("tests.probe_urls")
def test_the_walk_catches_a_route_that_forgot_auth() -> None:
    flagged = {}
    for name, regex, pattern in _protected_routes():
        if name not in ("probe-open", "probe-staff"):
            continue
        url = _example_url(regex, pattern)
        assert url is not None
        flagged[name] = _anonymous_failures(url)
    assert flagged["probe-open"] == ["GET 200"]
    assert flagged["probe-staff"] == []
