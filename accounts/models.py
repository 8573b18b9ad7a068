from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class Scope(models.TextChoices):
    """What a token may do. `read`: GET/HEAD/OPTIONS; `write`: every other method;
    `admin`: staff-only routes (and seeing every user's jobs); only staff hold it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


DEFAULT_SCOPES = (Scope.READ.value, Scope.WRITE.value)


def default_scopes() -> list[str]:
    return list(DEFAULT_SCOPES)


class User(AbstractUser):
    """A person or program using the API; staff run the operator console."""

    max_unfinished_tasks = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most unfinished (PENDING, RECEIVED, STARTED) jobs this user may have at once. "
        "Empty: the site default (BACKSERV_MAX_UNFINISHED_TASKS); 0: no limit.",
    )


class ApiToken(models.Model):
    """A per-user API key. The secret is never stored: only a keyed hash of it and a
    short public prefix used to find the row."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=default_scopes)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Written at most once a minute per token: a busy client must not turn every read
    # into a write.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
