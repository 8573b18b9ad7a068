from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from backserv_site.metrics import metrics_multiprocess_dir_reset


class Command(BaseCommand):
    help = (
        "Empty PROMETHEUS_MULTIPROC_DIR. Run it before starting the host's API and worker processes "
        "(a process that is already writing metrics there would lose them)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.PROMETHEUS_MULTIPROC_DIR:
            self.stdout.write("PROMETHEUS_MULTIPROC_DIR is not set; nothing to reset")
            return
        metrics_multiprocess_dir_reset()
        self.stdout.write(f"emptied {settings.PROMETHEUS_MULTIPROC_DIR}")
