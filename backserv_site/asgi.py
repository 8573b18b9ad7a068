"""The ASGI application (uvicorn): Django, plus the live streams (SSE, WebSockets)
and sync-submit waits, which wait on notices without holding a thread."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backserv_site.settings")
django_application = get_asgi_application()

from backserv_site.heap import settle_after_startup  # noqa: E402  (needs Django set up first)
from tasks.compat.routing import websocket_routes  # noqa: E402
from tasks.streams import streams_router  # noqa: E402

application = streams_router(django_application, websocket_routes)
settle_after_startup()
