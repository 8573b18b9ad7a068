"""Per-user rate limits on DRF's throttling machinery, counted in fixed windows.

DRF's own SimpleRateThrottle keeps a list of timestamps and writes it back after
reading it, so two processes racing lose counts. Here each window is one cache counter
bumped with `incr`, which is atomic in Redis (shared by every process and machine) and
in local memory (embedded mode): concurrent requests are counted exactly.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]: `user` for every request,
plus the scope a view names in `throttle_scope` (optionally only for the methods in
`throttle_methods`), e.g. `task_create` for submits or `server_registration`; a view's
`throttle_cost(request)` says how many requests one counts as (a batch of N jobs: N).
The limit nearest to running out is reported in X-RateLimit-* headers by
rate_limit_headers_middleware.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_only_middleware
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    # Imported lazily: DRF imports the permission and throttle classes while
    # rest_framework.views itself is still loading.
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

_REQUEST_ATTRIBUTE = "backserv_rate_limits"


class RateLimit(NamedTuple):
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the window ends


class FixedWindowRateThrottle(SimpleRateThrottle):
    reset_at: float = 0.0
    cost = 1  # how many of the window's requests this one uses

    def get_rate(self) -> str | None:
        # Read the rates now: DRF's class attribute is frozen at import and would
        # ignore settings changed later (per deployment in tests, override_settings).
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"No rate in DEFAULT_THROTTLE_RATES for throttle scope {self.scope!r}.")
        return rates[self.scope]

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None  # anonymous requests are refused before throttling
        return f"ratelimit:{self.scope}:{request.user.pk}"

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        window_start = int(self.timer() // self.duration * self.duration)
        self.reset_at = window_start + self.duration
        window_key = f"{key}:{window_start}"
        try:
            count = _count(self.cache, window_key, self.cost, timeout=self.duration + 5)
        except Exception as error:
            # The shared cache (Redis) is away: the API keeps answering, each process
            # counting on its own until it is back (a client may then get up to the
            # limit from every process).
            _shared_cache_away(error)
            count = _count(_fallback_cache, window_key, self.cost, timeout=self.duration + 5)
        limits = getattr(request._request, _REQUEST_ATTRIBUTE, [])
        limits.append(RateLimit(self.num_requests, max(0, self.num_requests - count), int(self.reset_at)))
        setattr(request._request, _REQUEST_ATTRIBUTE, limits)
        return count <= self.num_requests

    def wait(self) -> float:
        return max(1, math.ceil(self.reset_at - self.timer()))


def _count(cache: BaseCache, window_key: str, cost: int, *, timeout: int) -> int:
    """The window's count after adding `cost`."""
    cache.add(window_key, 0, timeout=timeout)
    try:
        return cache.incr(window_key, cost)
    except ValueError:
        # The counter expired between add() and incr(): this is a fresh window.
        cache.add(window_key, cost, timeout=timeout)
        return cost


_fallback_cache = LocMemCache("backserv-rate-limits-fallback", {})
_warned_at = -math.inf
_WARN_EVERY_SECONDS = 60.0


def _shared_cache_away(error: Exception) -> None:
    global _warned_at
    # Once a minute, not once a request, while the outage lasts.
    now = time.monotonic()
    if now - _warned_at >= _WARN_EVERY_SECONDS:
        _warned_at = now
        logger.warning(
            "rate limits counted per process: the cache is unreachable (%s: %s)", type(error).__name__, error
        )


class UserRateThrottle(FixedWindowRateThrottle):
    """Every request of a user, whichever of their tokens it carries."""

    scope = "user"


class ViewScopedRateThrottle(FixedWindowRateThrottle):
    """The extra limit a view names with `throttle_scope` (and `throttle_methods`)."""

    def __init__(self) -> None:
        # The scope, hence the rate, is known only once the view is.
        pass

    def allow_request(self, request: Request, view: APIView) -> bool:
        scope = getattr(view, "throttle_scope", None)
        methods = getattr(view, "throttle_methods", None)
        if not scope or (methods is not None and request.method not in methods):
            return True
        self.scope = scope
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        # A batch of N jobs uses N of the job-creation limit, not one; at most a whole
        # window's, so a batch larger than the limit waits for a fresh window instead
        # of never passing.
        cost_of = getattr(view, "throttle_cost", None)
        wanted = cost_of(request) if cost_of is not None else 1
        self.cost = min(max(1, wanted), self.num_requests)
        return super().allow_request(request, view)


def _add_rate_limit_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    limits: list[RateLimit] = getattr(request, _REQUEST_ATTRIBUTE, [])
    if limits:
        tightest = min(limits, key=lambda limit: (limit.remaining, -limit.reset_at, limit.limit))
        response["X-RateLimit-Limit"] = str(tightest.limit)
        response["X-RateLimit-Remaining"] = str(tightest.remaining)
        response["X-RateLimit-Reset"] = str(tightest.reset_at)
    return response


@sync_only_middleware
def rate_limit_headers_middleware(get_response: Callable) -> Callable:
    """X-RateLimit-Limit/Remaining/Reset on every rate-limited response: the limit
    closest to running out among those the request counted against.

    Sync only, and last in MIDDLEWARE: under ASGI, Django runs every middleware
    outside a sync-only one synchronously, so the whole stack and the view run on
    one thread. Without it each MiddlewareMixin hook of the stack hops to a thread
    and back (about 20 hops a request), which made a constant JSON view several
    times slower under load. (The live streams are ASGI apps outside Django.)"""

    def middleware(request: HttpRequest) -> HttpResponse:
        return _add_rate_limit_headers(request, get_response(request))

    return middleware
