from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import DEFAULT_SCOPES, Scope
from accounts.services import api_token_create, user_ensure
from backserv_site.errors import InvalidInput


class Command(BaseCommand):
    help = (
        "Create an API token for a user (creating the user if needed). The token is the last line printed. "
        "Default scopes: read,write; with --staff: read,write,admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")
        parser.add_argument("--scopes", help="comma-separated: read, write, admin (admin needs a staff user)")
        parser.add_argument("--staff", action="store_true", help="make the user staff (and superuser)")
        parser.add_argument("--expires-in", type=int, metavar="DAYS", help="the token stops working after DAYS days")

    def handle(
        self,
        *args: Any,
        username: str,
        name: str,
        scopes: str | None,
        staff: bool,
        expires_in: int | None,
        **options: Any,
    ) -> None:
        if expires_in is not None and expires_in < 1:
            raise CommandError("--expires-in must be at least 1 day.")
        if scopes is None:
            # --staff is for operators: their token should reach the staff routes too.
            wanted = [*DEFAULT_SCOPES, Scope.ADMIN.value] if staff else list(DEFAULT_SCOPES)
        else:
            wanted = [scope for scope in scopes.split(",") if scope.strip()]
        user = user_ensure(username=username, is_staff=staff)
        expires_at = timezone.now() + timedelta(days=expires_in) if expires_in else None
        try:
            issued = api_token_create(user=user, name=name, scopes=wanted, expires_at=expires_at)
        except InvalidInput as error:
            raise CommandError(error.message) from None
        scope_list = ",".join(issued.token.scopes)
        self.stderr.write(f"Token {issued.token.prefix} for {user.username}, scopes {scope_list} (shown once):")
        self.stdout.write(issued.secret)
