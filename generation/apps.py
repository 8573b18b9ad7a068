from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from generation import specs
        from generation.acceleration import dynamic_batch_size
        from generation.capabilities import worker_capabilities
        from servers import middleware
        from tasks import dispatch, task_types

        # The jobs layer validates and batches jobs by the specs of this app's task types.
        task_types.install(specs=specs.TASK_TYPES, validate=specs.validate_params)
        # A worker registering itself counts its slots by the batch size this app decides
        # and offers the task types it can run here.
        middleware.worker_batch_size = dynamic_batch_size
        middleware.worker_capabilities = worker_capabilities
        # Jobs routed to the local workers' queues go to this app's actor.
        dispatch.install_sender(remote=False, send=_run_task_send)


def _run_task_send(*args: Any) -> None:
    # Imported when first used: the actor module registers on the broker, which
    # django_dramatiq sets up in its own ready().
    from generation.actors import run_task_send

    run_task_send(*args)
