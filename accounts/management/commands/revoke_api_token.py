from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import ApiToken
from accounts.services import TOKEN_PREFIX, api_token_revoke, split_token


class Command(BaseCommand):
    help = "Revoke an API token by its prefix (the 8 characters after bs_, as the admin lists it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix", help="the token's prefix, or the whole token")

    def handle(self, *args: Any, prefix: str, **options: Any) -> None:
        # Whoever holds the whole token may paste it; only its prefix is looked at.
        lookup = split_token(prefix) or prefix.removeprefix(TOKEN_PREFIX)
        token = ApiToken.objects.select_related("user").filter(prefix=lookup).first()
        if token is None:
            # Not echoed: a mistyped argument may be a whole secret.
            raise CommandError("No API token has that prefix.")
        api_token_revoke(token=token)
        self.stdout.write(f"Revoked token {token.prefix} ({token.name or 'unnamed'}) of {token.user.username}.")
