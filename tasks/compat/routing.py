"""The documents' WebSocket routes, for the ASGI router (backserv_site.asgi): the ASGI
side of tasks.compat.urls."""

from __future__ import annotations

from tasks.compat.studio.streams import websocket_routes as studio_websocket_routes

websocket_routes = [*studio_websocket_routes]
