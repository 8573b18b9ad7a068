from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.services import api_token_create, user_ensure


class Command(BaseCommand):
    help = "Create an API token for a user (creating the user if needed). The token is the last line printed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")
        parser.add_argument("--staff", action="store_true", help="make the user staff (and superuser)")

    def handle(self, *args: Any, username: str, name: str, staff: bool, **options: Any) -> None:
        user = user_ensure(username=username, is_staff=staff)
        issued = api_token_create(user=user, name=name)
        self.stderr.write(f"Token {issued.token.prefix} for {user.username} (shown once):")
        self.stdout.write(issued.secret)
