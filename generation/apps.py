from __future__ import annotations

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from generation.acceleration import dynamic_batch_size
        from servers import middleware

        # A worker registering itself counts its slots by the batch size this app decides.
        middleware.worker_batch_size = dynamic_batch_size
