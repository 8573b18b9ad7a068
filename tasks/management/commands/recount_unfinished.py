from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection

from tasks.services.submit_statement import unfinished_counts_recount


class Command(BaseCommand):
    help = (
        "Postgres: set each user's count of unfinished jobs (what the quota reads) from the jobs, "
        "after their triggers were bypassed (a restore with triggers disabled)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            self.stdout.write("nothing to recount: on SQLite the quota counts the jobs themselves")
            return
        self.stdout.write(f"corrected {unfinished_counts_recount()} count(s)")
