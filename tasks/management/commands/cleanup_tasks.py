from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from backserv_site.errors import InvalidInput
from tasks.cleanup import parse_age, tasks_cleanup
from tasks.models import TERMINAL_STATES


class Command(BaseCommand):
    help = "Delete finished jobs older than an age, with their events and files, in small batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="age since the job finished: 30d, 12h, 90m, 2w")
        parser.add_argument(
            "--state",
            action="append",
            choices=sorted(TERMINAL_STATES),
            help="only jobs in this state (repeatable); default: every finished state",
        )
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")

    def handle(
        self, *args: Any, older_than: str, state: list[str] | None, batch_size: int, dry_run: bool, **options: Any
    ) -> None:
        try:
            cutoff = timezone.now() - parse_age(older_than)
            report = tasks_cleanup(finished_before=cutoff, states=state, batch_size=batch_size, dry_run=dry_run)
        except InvalidInput as error:
            raise CommandError(error.message) from None
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{verb} {report.tasks} task(s) finished before {cutoff.isoformat(timespec='seconds')}, "
            f"{report.bytes_freed} bytes of files ({report.batches} batch(es))"
        )
