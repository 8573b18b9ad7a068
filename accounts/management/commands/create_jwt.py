from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.jwt import Role, jwt_issue, lifetime_parse
from accounts.services import user_ensure


class Command(BaseCommand):
    help = (
        "Mint a JWT (HS256, signed with JWT_SECRET) for the distributed-system API's routes "
        "(/api/task, /api/servers, /api/stats), creating the user if needed. The token is the last line printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.USER, help="admin needs a staff user")
        parser.add_argument(
            "--expires-in", default="1d", metavar="LIFETIME", help="seconds, or N with s, m, h or d (default 1d)"
        )
        parser.add_argument("--staff", action="store_true", help="make the user staff (and superuser)")

    def handle(self, *args: Any, username: str, role: str, expires_in: str, staff: bool, **options: Any) -> None:
        try:
            lifetime = lifetime_parse(expires_in)
        except ValueError as error:
            raise CommandError(f"--expires-in: {error}") from None
        user = user_ensure(username=username, is_staff=staff)
        try:
            token = jwt_issue(user=user, role=role, expires_in=lifetime)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stderr.write(f"JWT for {user.username}, role {role}, valid for {lifetime}:")
        self.stdout.write(token)
