"""Dramatiq middleware of the generation app. Loaded while Django's apps are being set
up: nothing here imports models or torch at module level."""

from __future__ import annotations

import logging
import threading

import dramatiq
from django.conf import settings

logger = logging.getLogger(__name__)


class ModelPreloadMiddleware(dramatiq.Middleware):
    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from generation import worker_process
        from servers.middleware import worker_runs_jobs

        # With a GPU worker process, the models load there, not in the server; a worker
        # of webhooks alone loads none.
        if settings.GENERATION["PRELOAD_MODELS"] and worker_process.active() is None and worker_runs_jobs(worker):
            threading.Thread(target=self._preload, name="model-preload", daemon=True).start()

    def _preload(self) -> None:
        from django.db import connection

        from generation.models_cache import preload_models

        try:
            loaded = preload_models()
            logger.info("preloaded models: %s", ", ".join(loaded) or "none")
        finally:
            connection.close()
