"""Per-user rate limits on DRF's throttling machinery, counted in fixed windows.

DRF's own SimpleRateThrottle keeps a list of timestamps and writes it back after
reading it, so two processes racing lose counts. Here each window is one cache counter
bumped with `incr`, which is atomic in Redis (shared by every process and machine) and
in local memory (embedded mode): concurrent requests are counted exactly. On Redis
every limit of a request is counted in one round trip.

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

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
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


class _Window(NamedTuple):
    """One limit a request counts against: its window's counter and how much it adds."""

    key: str
    cost: int
    limit: int
    seconds: int
    reset_at: int


class RateLimitThrottle(SimpleRateThrottle):
    """Every limit of a request, counted together: `user`, and the view's scope where
    it names one. On Redis one MULTI counts them all: a round trip a request, where a
    throttle class per limit, each adding then incrementing its counter, took six on
    a submit."""

    def __init__(self) -> None:
        # The rates are read per request (see _rate): DRF's own reads them at import.
        self.refused: list[_Window] = []

    def allow_request(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return True  # anonymous requests are refused before throttling
        windows = [window for window in self._windows(request, view) if window is not None]
        if not windows:
            return True
        try:
            # The backend itself: DRF's `cache` is a proxy, which hides its class.
            counts = _count(caches[DEFAULT_CACHE_ALIAS], windows)
        except Exception as error:
            # The shared cache (Redis) is away: the API keeps answering, each process
            # counting on its own until it is back (a client may then get up to the
            # limit from every process).
            _shared_cache_away(error)
            counts = _count(_fallback_cache, windows)
        limits = getattr(request._request, _REQUEST_ATTRIBUTE, [])
        for window, count in zip(windows, counts, strict=True):
            limits.append(RateLimit(window.limit, max(0, window.limit - count), window.reset_at))
            if count > window.limit:
                self.refused.append(window)
        setattr(request._request, _REQUEST_ATTRIBUTE, limits)
        return not self.refused

    def _windows(self, request: Request, view: APIView) -> list[_Window | None]:
        windows = [self._window("user", request, cost=1)]
        scope = getattr(view, "throttle_scope", None)
        methods = getattr(view, "throttle_methods", None)
        if scope and (methods is None or request.method in methods):
            # A batch of N jobs uses N of the job-creation limit, not one; at most a
            # whole window's, so a batch larger than the limit waits for a fresh window
            # instead of never passing.
            cost_of = getattr(view, "throttle_cost", None)
            windows.append(self._window(scope, request, cost=cost_of(request) if cost_of is not None else 1))
        return windows

    def _window(self, scope: str, request: Request, *, cost: int) -> _Window | None:
        rate = _rate(scope)
        if rate is None:
            return None
        limit, seconds = self.parse_rate(rate)
        window_start = int(self.timer() // seconds * seconds)
        key = f"ratelimit:{scope}:{request.user.pk}:{window_start}"
        return _Window(key, min(max(1, cost), limit), limit, seconds, window_start + seconds)

    def wait(self) -> float:
        return max(1, math.ceil(max(window.reset_at for window in self.refused) - self.timer()))


def _rate(scope: str) -> str | None:
    # Read now: DRF's class attribute is frozen at import and would ignore settings
    # changed later (per deployment in tests, override_settings).
    rates = api_settings.DEFAULT_THROTTLE_RATES
    if scope not in rates:
        raise ImproperlyConfigured(f"No rate in DEFAULT_THROTTLE_RATES for throttle scope {scope!r}.")
    return rates[scope]


def _count(cache: BaseCache, windows: list[_Window]) -> list[int]:
    """Each window's count after adding its cost: on Redis in one MULTI (each counter
    made with its expiry if new, then incremented); elsewhere one by one."""
    if isinstance(cache, RedisCache):
        keys = [cache.make_and_validate_key(window.key) for window in windows]
        pipeline = cache._cache.get_client(keys[0], write=True).pipeline(transaction=True)
        for key, window in zip(keys, windows, strict=True):
            pipeline.set(key, 0, ex=window.seconds + 5, nx=True)
            pipeline.incrby(key, window.cost)
        return [int(count) for count in pipeline.execute()[1::2]]
    return [_count_one(cache, window) for window in windows]


def _count_one(cache: BaseCache, window: _Window) -> int:
    cache.add(window.key, 0, timeout=window.seconds + 5)
    try:
        return cache.incr(window.key, window.cost)
    except ValueError:
        # The counter expired between add() and incr(): this is a fresh window.
        cache.add(window.key, window.cost, timeout=window.seconds + 5)
        return window.cost


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
