from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backserv_site.settings")
application = get_wsgi_application()

from backserv_site.heap import settle_after_startup  # noqa: E402  (needs Django set up first)

settle_after_startup()
