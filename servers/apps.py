from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = "GPU servers"

    def ready(self) -> None:
        from servers import routing, selectors
        from tasks import dispatch, sweeper

        # The jobs layer routes through this app and sends remote jobs to its forwarder.
        dispatch.install_routing(
            dispatch.Routing(
                route_new_task=routing.route_new_task,
                plan_new_task=routing.plan_new_task,
                task_destination=routing.task_destination,
                route_waiting_on_commit=routing.route_waiting_on_commit,
                remote_servers_declaring=selectors.remote_servers_declaring,
                remote_capabilities_declared=selectors.remote_capabilities_declared,
            )
        )
        dispatch.install_sender(remote=True, send=_forward_task_send)
        # Each sweep also checks the servers: missed heartbeats, health, departed workers.
        sweeper.install_sweep(_servers_sweep)


def _forward_task_send(*args: Any) -> None:
    # Imported when first used: the actor module registers on the broker, which
    # django_dramatiq sets up in its own ready().
    from servers.actors import forward_task_send

    forward_task_send(*args)


def _servers_sweep() -> dict[str, int]:
    from servers.monitor import servers_sweep

    return servers_sweep()
