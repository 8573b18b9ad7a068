from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from tasks.sweeper import sweep_once


class Command(BaseCommand):
    help = (
        "Run the sweeps once (requeue jobs with expired leases, time out jobs past their queue deadline, "
        "re-send lost messages), or forever with --loop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true")
        parser.add_argument("--interval", type=float, default=settings.BACKSERV["SWEEP_INTERVAL_SECONDS"])

    def handle(self, *args: Any, loop: bool, interval: float, **options: Any) -> None:
        while True:
            counts = sweep_once()
            self.stdout.write(", ".join(f"{name} {count}" for name, count in counts.items()))
            if not loop:
                return
            time.sleep(interval)
