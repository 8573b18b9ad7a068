from __future__ import annotations

import os
import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.worker_process import SOCKET_FD_VARIABLE, serve_parent


class Command(BaseCommand):
    help = "Internal: the GPU worker process `serve` starts for itself (see generation.worker_process)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--threads", type=int, default=1)

    def handle(self, *args: Any, threads: int, **options: Any) -> None:
        descriptor = os.environ.get(SOCKET_FD_VARIABLE)
        if not descriptor:
            raise CommandError(f"started without {SOCKET_FD_VARIABLE}: only `manage.py serve` starts this command")
        serve_parent(socket.socket(fileno=int(descriptor)), threads)
